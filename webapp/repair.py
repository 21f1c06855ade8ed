"""The Repair tab: paint over part of a digit, and the model fills it in."""

import random

import gradio as gr

from diffusion import edit, media

from .editing import AS_READ, BRUSH_SIZE, CANVAS_SIZE, EDIT_DIGIT_CHOICES, Editing, edit_outputs
from .shared import (MODEL_EVENT, Context, Refusal, announce, errors_shown_on_the_page, live_region, seed_box, show_on_phones)

PAINTED = "the part I painted"  # else one of edit.PARTS: a mask without a pointer


class Repair:
    def __init__(self, editing: Editing):
        self.editing, self.pipe = editing, editing.context.pipe

    def repair_in_editor(self, editor: dict | None, part: str, digit: str, seed: int):
        """Repair's button: the editor's picture with the painted part (or the part chosen) filled in."""
        image = self.editing.canvas_picture(editor, "background")
        if part == PAINTED:
            uploaded = self.editing.context.uploaded_picture
            layers = [uploaded(layer, "painted layer") for layer in editor.get("layers") or []]
            if not layers:
                raise Refusal("paint over the part of the digit to fill in (or pick a part), then press Repair")
            mask = edit.mask_from_layers(layers, image.size)
        else:
            with errors_shown_on_the_page():
                mask = edit.part_mask(part, image.size)
        for update in self.editing.run_edit(image, mask, digit, 1.0, seed):
            yield update[:5]

    def repair_start(self, digit: str, seed: int) -> dict:
        """The repair editor's picture: a generated digit (any, for AS_READ), CANVAS_SIZE px."""
        return {"background": self.editing.generated_digit(digit, seed), "layers": [], "composite": None}

    def repair_from_file(self, file: dict | None) -> dict:
        """The repair editor's picture: Draw's finished digit (the raw value of its PNG's gr.File)."""
        if not file:
            raise Refusal("finish a drawing in the Draw tab first")
        self.editing.context.uploaded_picture(file, "finished drawing")  # a picture made here, not a path elsewhere
        return {"background": file["path"], "layers": [], "composite": None}


def build(context: Context, drawn: gr.File) -> None:
    """The tab's layout and events; `drawn` is Draw's finished digit, to start from."""
    handlers = Repair(Editing(context))
    gr.Markdown("Paint over part of a digit, and let the model fill that part in for the digit you pick, while "
                "the rest stays exactly as it was. At every step the model is told the kept pixels, noised to "
                "that step, so what it makes joins them.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            editor = gr.ImageEditor(handlers.repair_start("3", 0), label="Paint over the part to fill in",
                                    canvas_size=(CANVAS_SIZE, CANVAS_SIZE), sources=["upload"], layers=False,
                                    transforms=(), brush=gr.Brush(BRUSH_SIZE * 2, colors=[(media.HIGHLIGHT, 0.6)],
                                                                  color_mode="fixed"), elem_id="repair-editor")
            with gr.Row():
                use_drawing = gr.Button("Use my finished drawing", size="sm", elem_id="use-drawing")
                new_digit = gr.Button("A new generated digit", size="sm", elem_id="new-digit")
            part = gr.Radio([PAINTED, *edit.PARTS], value=PAINTED, label="Part to fill in", elem_id="repair-part")
            digit = gr.Radio(EDIT_DIGIT_CHOICES, value=AS_READ, label="Digit to make", elem_id="repair-digit")
            seed = seed_box(0, elem_id="repair-seed")
            button = gr.Button("Repair", variant="primary", elem_id="repair")
        with gr.Column(scale=2):
            outputs = edit_outputs("repair", "Paint over part of the digit, then press Repair.")
    # Queued: the page shows a gr.Error's message ("finish a drawing first") only for queued events.
    use_drawing.click(handlers.repair_from_file, drawn, editor, preprocess=False, show_progress="hidden",
                      api_visibility="private")
    new_digit.click(lambda digit: handlers.repair_start(digit, random.randrange(2**32)), digit, editor,
                    api_visibility="private", **MODEL_EVENT)
    announcement = live_region("repair")
    repairing = button.click(handlers.repair_in_editor, [editor, part, digit, seed], outputs, api_visibility="private",
                             js=show_on_phones("repair-status"), **MODEL_EVENT)
    announce(repairing, outputs[2], announcement)
