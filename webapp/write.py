"""The Write tab: a whole number in one hand, or in the hand of a digit you drew."""

import random

import gradio as gr
from gradio import FileData

from diffusion import edit, media, style, write
from diffusion.classifier import class_probabilities

from .editing import AS_READ, EDIT_DIGIT_CHOICES, Editing, drawing_canvas, last
from .page import FIGURES_TEMPLATE, picture_template
from .shared import (MAX_UI_SEED, MODEL_EVENT, ROW_SIZE, Context, announce, digits_of,
                     errors_shown_on_the_page, figure, live_region, picture, seed_box, show_on_phones)

NUMBER = "2026"  # the number the tab starts with
YOUR_NUMBER = "0123456789"  # what the tab writes in your hand to start with: every digit
YOUR_DIGIT_SIZE = 128  # about: your digit, beside the line written in its hand


class Write:
    def __init__(self, context: Context):
        self.context = context
        self.editing = Editing(context)

    def write_number(self, number: str, seed: int | None = None):
        """Write and Another hand: stream (figures, picture, status, GIF path, PNG path, seed) of the
        number in the hand of `seed` (None: a new hand, a random seed)."""
        seed = random.randrange(MAX_UI_SEED) if seed is None else seed
        for update in self.number_updates(number, seed):
            yield *update[:5], seed

    def number_updates(self, number: str, seed: int):
        """Stream (figures, picture, status, GIF path, PNG path, details): the number in the hand of
        `seed`, its digits emerging together, then looping."""
        pipe = self.context.pipe
        with errors_shown_on_the_page():
            digits, gaps = write.parse_number(number)
            steps = write.write_steps(pipe, pipe.settings(digits, seed))
        yield from self.stream(steps, digits, gaps, f"{number.strip()} in the hand of seed {seed}", [],
                               f"mnist-write_{''.join(map(str, digits))}_seed-{seed}")

    def write_yours(self, drawing: dict | None, drawn_digit: str, number: str):
        """Write it in my hand: stream (figures, picture, status, GIF path, PNG path) of the number in
        the hand of the digit on the canvas (its raw value)."""
        for update in self.like_updates(self.editing.canvas_picture(drawing, "composite"), drawn_digit, number):
            yield update[:5]

    def like_updates(self, image, drawn_digit: str, number: str):
        """As number_updates, in the hand of a picture of one digit, which shows drawn_digit (AS_READ:
        the digit the classifier reads in it); your digit is shown beside the line."""
        pipe = self.context.pipe
        told = None if drawn_digit == AS_READ else digits_of(drawn_digit, all_ten=False, name="drawn_digit")[0]
        with errors_shown_on_the_page():
            digits, gaps = write.parse_number(number)
            model_input = edit.to_model_input(image)[0]
            yours = told if told is not None else edit.read_digit(self.context.classifier, model_input,
                                                                  instead="choose the digit you drew")
            steps = write.write_like_steps(pipe, edit.draw_settings(pipe, digits), model_input, yours)
        hand = style.hand(model_input, [yours])[0]
        yours_shown = figure(f"your {yours}", media.to_uint8(model_input)[0], YOUR_DIGIT_SIZE,
                             alt=f"your digit, a {yours}, as the model gets it (28 x 28): {style.describe(hand)}")
        yield from self.stream(steps, digits, gaps, f"{number.strip()} in the hand of your {yours}", [yours_shown],
                               f"mnist-write_{''.join(map(str, digits))}_like-your-{yours}")
        edit.release_freed_memory()  # what the upload's decoding and this writing freed, back to the system

    def stream(self, steps, digits: list[int], gaps: list[int], what: str, shown: list[dict], name: str):
        """(figures, picture, status, GIF, PNG, details) at each step of writing, then for the result."""
        clock, frames = self.context.clock, []
        started = clock()
        with errors_shown_on_the_page():
            for step, step_frames in write.line_animation(steps, len(digits), gaps):
                frames += step_frames
                alt = f"{what}: x_t above the model's guess of x_0, step {step.index + 1} of {len(steps)}"
                yield shown, picture(frames[-1:], alt), f"Step {step.index + 1} of {len(steps)} · " \
                      f"{clock() - started:.1f} s", None, None, None
        written = write.line(step.x, gaps)
        gif_path, png_path = self.context.save_downloads(name, frames, written,
                                                          png_size=write.LINE_SCALE * written.shape[1])
        read = class_probabilities(self.context.classifier, step.x).argmax(1).tolist()
        read_as, hand = " ".join(map(str, read)), style.hand(step.x, digits).mean(axis=0)
        status = (f"{what}: written in {clock() - started:.2f} s. The classifier reads it as {read_as}; "
                  f"its hand: {style.describe(hand)}.")
        result = figure("written", written, ROW_SIZE, alt=f"{what}, written: the classifier reads {read_as}")
        details = {"digits": digits, "read_as": read, "hand": dict(zip(style.MEASURES, hand.round(2).tolist()))}
        yield shown + [result], picture(frames, f"the writing of {what}: x_t above the model's guess of x_0, "
                                                 "looping"), status, gif_path, png_path, details

    def api_write(self, number: str, seed: int = 0) -> tuple[FileData, FileData, dict]:
        """Write a number (up to 12 digits, spaces allowed) in one hand, that of `seed`. Returns the
        line (PNG), its writing (GIF), and the details: the digits, what the classifier reads each
        as, and the hand (slant in degrees, stroke width and size in pixels, against the usual)."""
        *_, gif, png, details = last(self.number_updates(number, seed))
        return png, gif, details

    def api_write_like(self, picture: FileData, number: str = YOUR_NUMBER,
                       drawn_digit: int | None = None) -> tuple[FileData, FileData, dict]:
        """Write a number in the hand of a picture of one digit (PNG, JPEG, ...), which shows
        drawn_digit (None: the digit it reads as). Returns as /write does."""
        choice = AS_READ if drawn_digit is None else str(drawn_digit)
        *_, gif, png, details = last(self.like_updates(self.context.uploaded_picture(picture, "picture"), choice, number))
        return png, gif, details


def outputs() -> list[gr.components.Component]:
    """The right-hand side: status, your digit and the written line, the live picture, downloads."""
    status = gr.Markdown(label="status", show_label=False, elem_id="write-status")
    figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="write-figures")
    live = gr.HTML(html_template=picture_template("Type a number and press Write, or draw a digit and press "
                                                  "Write it in my hand."), label="picture", show_label=False,
                   elem_id="write-picture")
    with gr.Row():
        gif = gr.File(label="Animation (GIF)", interactive=False, elem_id="write-gif", elem_classes="download")
        png = gr.File(label="The line (PNG)", interactive=False, elem_id="write-png", elem_classes="download")
    return [figures, live, status, gif, png]


def build(context: Context) -> None:
    handlers = Write(context)
    gr.Markdown("Write a whole number as one person would. A digit's class comes from its label, its hand (slant, "
                "stroke width, size) partly from its starting noise: here every digit starts from mostly the same "
                "noise, and while they take shape they are moved to one hand. **In your hand**: draw one digit, and "
                "the model writes any number from your digit's own starting noise (found by running the sampler "
                "backwards from it), in your digit's slant and stroke width.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("## In one hand")
            number = gr.Textbox(NUMBER, label="Number to write", info="Up to 12 digits; spaces allowed.",
                                max_length=40, elem_id="number")
            seed = seed_box(0, "Hand (seed)", elem_id="hand-seed")
            with gr.Row():
                write_button = gr.Button("Write", variant="primary", elem_id="write")
                another = gr.Button("Another hand", elem_id="another-hand")
            gr.Markdown("## In your hand")
            canvas = drawing_canvas("Your digit", "hand-canvas")
            example = gr.Button("Start from a generated digit", size="sm", elem_id="hand-example")
            drawn_digit = gr.Radio(EDIT_DIGIT_CHOICES, value=AS_READ, label="The digit you drew", elem_id="drawn-digit")
            your_number = gr.Textbox(YOUR_NUMBER, label="Number to write in your hand", max_length=40,
                                     elem_id="your-number")
            mine = gr.Button("Write it in my hand", variant="primary", elem_id="write-mine")
        with gr.Column(scale=2):
            shown = outputs()
    announcement = live_region("write")
    on_phones = show_on_phones("write-status")
    events = [write_button.click(handlers.write_number, [number, seed], [*shown, seed], js=on_phones,
                                 api_visibility="private", **MODEL_EVENT),
              another.click(handlers.write_number, [number], [*shown, seed], js=on_phones,
                            api_visibility="private", **MODEL_EVENT),
              mine.click(handlers.write_yours, [canvas, drawn_digit, your_number], shown, js=on_phones,
                         api_visibility="private", **MODEL_EVENT)]
    for event in events:
        announce(event, shown[2], announcement)
    starting = example.click(handlers.editing.example, [drawn_digit, seed], canvas, api_visibility="private", **MODEL_EVENT)
    announce(starting, "A generated digit is on the canvas: press Write it in my hand, or draw over it.", announcement)
    gr.api(handlers.api_write, api_name="write", concurrency_id="model")
    gr.api(handlers.api_write_like, api_name="write_like", concurrency_id="model")
