"""The Morph tab: walk from one digit, or one seed, to another."""

import gradio as gr

from diffusion import media, morph
from diffusion.classifier import class_probabilities
from diffusion.settings import is_number

from .page import FIGURES_TEMPLATE, READINGS_TEMPLATE
from .shared import (DIGIT_CHOICES, MODEL_EVENT, ROW_SIZE, Context, Refusal, animation, announce, digits_of,
                     errors_shown_on_the_page, figure, live_region, seed_box, shown_width)

MORPH_FRAMES = 9  # the morph's row, from its start to its end
MORPH_SIZE = 240  # about, the size of the looping morph and of the digit at a point
SAVE_FAILED = "the morph was made but could not be saved for download ({reason})"


class Morph:
    def __init__(self, context: Context):
        self.context = context

    def ends(self, start_digit: str, start_seed: int, end_digit: str, end_seed: int):
        """The morph's two ends as Settings (morph.morph_ends), from the tab's widgets."""
        start, end = (digits_of(start_digit, all_ten=False)[0], start_seed), (digits_of(end_digit, all_ten=False)[0], end_seed)
        with errors_shown_on_the_page():
            return morph.morph_ends(self.context.pipe, start, end)

    def morph(self, start_digit: str, start_seed: int, end_digit: str, end_seed: int, frames: int = MORPH_FRAMES):
        """Stream (figures, reading, GIF path): the row of frames as it denoises, then the morph
        looping there and back, its row of frames, and what the classifier reads each frame as."""
        start, end = self.ends(start_digit, start_seed, end_digit, end_seed)
        with errors_shown_on_the_page():
            steps = morph.morph_steps(self.context.pipe, start, end, morph.frame_points(frames))
            walk = walk_name(start, end)
            for step in steps:
                denoising = media.denoising_frames([step.x], step.x0, 1)[0]
                yield [figure(f"x_t above the model's guess of x_0, step {step.index + 1}", denoising, ROW_SIZE,
                              alt=f"{walk}, its {frames} frames: x_t above the model's guess of x_0, step "
                                  f"{step.index + 1} of {len(steps)}")], f"Step {step.index + 1} of {len(steps)}", None
        images = media.to_uint8(step.x)
        loop = media.back_and_forth(list(images))
        gif_path, _ = self.context.save_downloads(file_stem(start, end, frames), loop, fps=morph.FPS,
                                                  failure=SAVE_FAILED)
        with self.context.encoding:
            looping = {"label": "the morph, there and back", "alt": f"{walk}, there and back, looping",
                       "width": shown_width(images[0], MORPH_SIZE), **animation(loop, morph.FPS)}
            row = figure(f"its {frames} frames, from start (left) to end", media.grid(images, columns=frames), ROW_SIZE,
                         alt=f"{walk}: its {frames} frames in a row, from start (left) to end")
        reading = morph.reading(class_probabilities(self.context.classifier, step.x))
        yield [looping, row], f"The classifier reads the frames as: {reading} (in brackets: less than 50% sure)", gif_path

    def morph_point(self, start_digit: str, start_seed: int, end_digit: str, end_seed: int,
                    point: float) -> tuple[list[dict], dict]:
        """(figures, readings): the digit at one point of the morph, and what the classifier reads it as."""
        if not (is_number(point) and 0 <= point <= 1):
            raise Refusal(f"point must be a number from 0 to 1, not {point!r}")
        start, end = self.ends(start_digit, start_seed, end_digit, end_seed)
        with errors_shown_on_the_page():
            image = morph.morph(self.context.pipe, start, end, [point])
        probabilities = class_probabilities(self.context.classifier, image)[0]
        likeliest = int(probabilities.argmax())
        readings = media.final_readings(probabilities[None], [likeliest])
        walk = walk_name(start, end)
        return [figure(f"at {point:g} of the way", media.to_uint8(image)[0], MORPH_SIZE,
                       alt=f"{walk} at {point:g} of the way, read as a {likeliest}")], readings


def file_stem(start, end, frames: int) -> str:
    """The name of a morph's downloads, without the extension."""
    return f"mnist-morph_{start.digits[0]}-seed-{start.seed}_to_{end.digits[0]}-seed-{end.seed}_{frames}-frames"


def walk_name(start, end) -> str:
    """What a morph's pictures show, for their alternative text."""
    return f"the morph from {start.digits[0]} (seed {start.seed}) to {end.digits[0]} (seed {end.seed})"


def build(context: Context) -> None:
    handlers = Morph(context)
    gr.Markdown("Walk from one digit to another. **Same digit, two seeds**: the starting noise moves from "
                "one seed's to the other's along a sphere (slerp), so it stays the size of real noise, and "
                "nearby noise gives nearby digits. **Two digits, one seed**: the model is told a mix of the "
                "two, (1 - point) of the start and point of the end. Change both for both at once.")
    with gr.Row():
        with gr.Column(min_width=240):
            start_digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="Start: digit", elem_id="start-digit")
            start_seed = seed_box(1, "Start: seed", elem_id="start-seed")
        with gr.Column(min_width=240):
            end_digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="End: digit", elem_id="end-digit")
            end_seed = seed_box(2, "End: seed", elem_id="end-seed")
    frames = gr.Slider(morph.MIN_FRAMES, morph.MAX_FRAMES, value=MORPH_FRAMES, step=1, precision=0, label="Frames",
                       elem_id="frames")
    start = gr.Button("Morph", variant="primary", elem_id="morph")
    reading = gr.Markdown(label="reading", show_label=False, elem_id="morph-status")
    figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="morph-figures")
    gif = gr.File(label="Morph (GIF)", elem_id="morph-gif")
    announcement = live_region("morph")
    point = gr.Slider(0, 1, value=0.5, step=0.05, label="A point between start (0) and end (1)", elem_id="point",
                      info="Release to see the digit there, and what the classifier reads it as.")
    with gr.Row():
        point_figure = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="point-figures")
        point_readings = gr.HTML(html_template=READINGS_TEMPLATE, label="probabilities", show_label=False,
                                 elem_id="point-readings")
    ends = [start_digit, start_seed, end_digit, end_seed]
    morphing = start.click(handlers.morph, [*ends, frames], [figures, reading, gif], api_name="morph", **MODEL_EVENT)
    announce(morphing, reading, announcement)
    gr.on([point.release, start.click], handlers.morph_point, [*ends, point], [point_figure, point_readings],
          api_name="morph_point", trigger_mode="always_last", **MODEL_EVENT)
