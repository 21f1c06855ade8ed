"""What the Draw and Repair tabs share: an edit streamed to the page, and its outputs (the API's
finish_drawing and repair_digit, in tools.py, run the same edit)."""

import random

import gradio as gr
import numpy as np
from PIL import Image

from diffusion import edit, media
from diffusion.classifier import class_probabilities

from .page import FIGURES_TEMPLATE, picture_template
from .shared import (DIGIT_CHOICES, FIGURE_SIZE, Context, Refusal, described, digits_of, errors_shown_on_the_page, figure,
                     picture)

CANVAS_SIZE = 280  # px: the drawing canvas, and the repair's picture (a 28x28 digit at 10x)
BRUSH_SIZE = 18  # px on the canvas: about MNIST's stroke width at that scale
AS_READ = "the one it looks like"  # the edit's digit choice: the one the classifier reads in the picture
EDIT_DIGIT_CHOICES = [AS_READ] + DIGIT_CHOICES[:-1]


class Editing:
    """An edit's handlers: Draw (no mask: SDEdit) or Repair (fill in the mask), from the page or the API."""

    def __init__(self, context: Context):
        self.context = context

    def run_edit(self, image: Image.Image, mask: Image.Image | None, digit: str, strength: float, seed: int):
        """Stream (figures, picture, status, GIF path, PNG path, details): each step, with the 28x28
        input the model gets (and the mask over it), then the denoising as a looping animation, and
        in the details the digit made, the digit the picture was read as and the result's class
        probabilities."""
        pipe, classifier, clock = self.context.pipe, self.context.classifier, self.context.clock
        with errors_shown_on_the_page():
            model_input, mask = edit.to_model_input(image, mask)
            read_as = edit.read_digit(classifier, model_input, sure=edit.SURE if digit == AS_READ else 0)
        digits = [read_as] if digit == AS_READ else digits_of(digit, all_ten=False)
        figures = self.input_figures(model_input, mask, read_as)
        what = "your drawing" if mask is None else "your repair"
        with errors_shown_on_the_page():
            if mask is None:
                steps = edit.draw_steps(pipe, model_input, edit.draw_settings(pipe, digits, seed), strength)
            else:
                steps = edit.repair_steps(pipe, model_input, mask, pipe.settings(digits, seed))
            frames, started = [], clock()
            for step, step_frames in media.denoising_animation(steps):
                frames += step_frames
                status = f"Step {step.index + 1} of {len(steps)} · {clock() - started:.1f} s"
                alt = f"{what} made into a {digits[0]}: x_t above the model's guess of x_0, step {step.index + 1} " \
                      f"of {len(steps)}"
                yield figures, picture(frames[-1:], alt), status, None, None, None
        name = f"mnist-{'draw' if mask is None else 'repair'}_digit-{digits[0]}" \
               f"{f'_strength-{strength:g}' if mask is None else ''}_seed-{seed}"
        gif_path, png_path = self.context.save_downloads(name, frames, media.to_uint8(step.x)[0])
        final_reading = class_probabilities(classifier, step.x)[0]
        status = (f"{'Finished' if mask is None else 'Repaired'} as a {digits[0]} in {clock() - started:.2f} s; "
                  f"the classifier reads it as a {int(final_reading.argmax())} ({final_reading.max():.0%} sure)")
        details = {"digit": digits[0], "picture_read_as": read_as, "probabilities": final_reading.tolist()}
        alt = f"the denoising of {what} into a {digits[0]}: x_t above the model's guess of x_0 at each step, looping"
        yield figures, picture(frames, alt), status, gif_path, png_path, details
        edit.release_freed_memory()  # what the upload's decoding and this edit freed, back to the system

    @staticmethod
    def input_figures(model_input, mask, read_as: int) -> list[dict]:
        """What the model gets: the 28x28 input (read as a digit), or what it keeps and the part to fill in."""
        if mask is None:
            return [figure(f"what the model gets: read as a {read_as}", media.to_uint8(model_input)[0], FIGURE_SIZE)]
        return [figure("what the model keeps", media.to_uint8(edit.kept_pixels(model_input, mask))[0], FIGURE_SIZE),
                figure("the part to fill in", media.mask_overlay(model_input, mask), FIGURE_SIZE)]

    def canvas_picture(self, value: dict | None, part: str) -> Image.Image:
        """The picture in a Sketchpad's or ImageEditor's raw value: its "composite" (all drawn) or its "background"."""
        setting = "drawing" if part == "composite" else "picture"
        if value is not None and not isinstance(value, dict):
            raise Refusal(f"{setting}: expected the canvas's value, an object with its {part!r} file, "
                           f"not {described(value)}")
        file = (value or {}).get(part)
        if not file:
            raise Refusal("the canvas is empty: draw a digit first" if part == "composite" else
                           "there is no picture to repair: upload one, or start from a digit")
        return self.context.uploaded_picture(file, setting)

    def generated_digit(self, digit: str, seed: int) -> np.ndarray:
        """A digit to start an edit from, white on black at CANVAS_SIZE px: the digit chosen, or for
        AS_READ any digit (picked by the seed)."""
        pipe = self.context.pipe
        choice = random.Random(seed).randrange(10) if digit == AS_READ else digits_of(digit, all_ten=False)[0]
        return media.enlarge(media.to_uint8(pipe.generate(pipe.settings([choice], seed)))[0], CANVAS_SIZE)

    def example(self, digit: str, seed: int) -> dict:
        """A canvas (its value) holding a generated digit in ink on paper, as if drawn: a start without a pointer."""
        drawing = 255 - self.generated_digit(digit, seed)
        return {"background": drawing, "layers": [], "composite": drawing}


def last(updates):
    """A stream's last update."""
    for update in updates:
        pass
    return update


def drawing_canvas(label: str, elem_id: str) -> gr.Sketchpad:
    """A canvas to draw one digit on with the mouse or a finger: black ink, about MNIST's stroke width."""
    return gr.Sketchpad(np.full((CANVAS_SIZE, CANVAS_SIZE, 3), 255, np.uint8), label=label,
                        canvas_size=(CANVAS_SIZE, CANVAS_SIZE), fixed_canvas=True, layers=False, transforms=(),
                        brush=gr.Brush(BRUSH_SIZE, colors=["#000000"], color_mode="fixed"), elem_id=elem_id,
                        elem_classes="drawing")


def edit_outputs(name: str, placeholder: str) -> list[gr.components.Component]:
    """The Draw and Repair tabs' right-hand side: status, the model's input, the live picture, downloads."""
    status = gr.Markdown(label="status", show_label=False, elem_id=f"{name}-status")
    with gr.Row(elem_id=f"{name}-row", elem_classes="edit-row"):
        figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="input", show_label=False, elem_id=f"{name}-input")
        live = gr.HTML(html_template=picture_template(placeholder), label="picture", show_label=False,
                       elem_id=f"{name}-picture")
    with gr.Row():
        gif = gr.File(label="Animation (GIF)", interactive=False, elem_id=f"{name}-gif", elem_classes="download")
        png = gr.File(label="Final image (PNG)", interactive=False, elem_id=f"{name}-png",  # Repair's input too
                      elem_classes="download")
    return [figures, live, status, gif, png]
