"""The Draw tab: draw a digit, and the model finishes it (SDEdit)."""

import gradio as gr

from diffusion import edit

from .editing import AS_READ, EDIT_DIGIT_CHOICES, Editing, drawing_canvas, edit_outputs
from .shared import MODEL_EVENT, Context, announce, live_region, seed_box, show_on_phones


class Draw:
    def __init__(self, editing: Editing):
        self.editing = editing

    def draw_on_canvas(self, drawing: dict | None, digit: str, strength: float, seed: int):
        """Draw's button: the canvas's picture (its raw value), finished by the model."""
        for update in self.editing.run_edit(self.editing.canvas_picture(drawing, "composite"), None, digit, strength, seed):
            yield update[:5]



def build(context: Context) -> gr.File:
    """The tab's layout and events; returns the finished digit's PNG, which Repair can start from."""
    handlers = Draw(Editing(context))
    gr.Markdown("Draw a digit with the mouse or a finger, and let the model finish it. Your drawing is brought "
                "into the model's world as MNIST's digits were made: its strokes scaled to fit a 20x20 box, "
                "centred by their centre of mass in 28x28. Then it is noised part of the way (**strength**) and "
                "denoised towards the digit you pick (SDEdit). Ask for another digit at high strength, and the "
                "model keeps your layout where it can.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            canvas = drawing_canvas("Your drawing", "canvas")
            example = gr.Button("Start from a generated digit", size="sm", elem_id="draw-example")
            digit = gr.Radio(EDIT_DIGIT_CHOICES, value=AS_READ, label="Digit to make", elem_id="draw-digit")
            strength = gr.Slider(0.05, 1, value=edit.DEFAULT_STRENGTH, step=0.05, label="Strength", elem_id="strength",
                                 info="Low: tidy my strokes. High: use them only as a loose hint.")
            seed = seed_box(0, elem_id="draw-seed")
            button = gr.Button("Finish my digit", variant="primary", elem_id="draw")
        with gr.Column(scale=2):
            outputs = edit_outputs("draw", "Draw a digit, then press Finish my digit.")
    announcement = live_region("draw")
    starting = example.click(handlers.editing.example, [digit, seed], canvas, api_visibility="private", **MODEL_EVENT)
    announce(starting, "A generated digit is on the canvas: press Finish my digit, or draw over it.", announcement)
    finishing = button.click(handlers.draw_on_canvas, [canvas, digit, strength, seed], outputs,
                             api_visibility="private", js=show_on_phones("draw-status"), **MODEL_EVENT)
    announce(finishing, outputs[2], announcement)
    return outputs[-1]
