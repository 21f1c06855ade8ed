"""The "How guidance works" tab: the same seed at several guidance scales, side by side."""

import gradio as gr

from diffusion import Pipeline, media
from diffusion.measure import guidance_sweep

from .page import FIGURES_TEMPLATE
from .shared import (DIGIT_CHOICES, MODEL_EVENT, ROW_SIZE, Context, announce, digits_of, errors_shown_on_the_page,
                     figure, guided_where, live_region, seed_box)

GUIDANCE_SCALES_COMPARED = (0.0, 1.0, 1.5, 3.0, 5.0, 10.0)
SAMPLES_COMPARED_OF_ONE_DIGIT = 6  # a row per guidance scale shows how alike its samples are


def scales_compared(pipe: Pipeline) -> tuple[float, ...]:
    """GUIDANCE_SCALES_COMPARED as far as the model follows them (a student: up to the scale its
    largest input acts as), and then its largest."""
    largest = min(pipe.max_guidance_scale, GUIDANCE_SCALES_COMPARED[-1])
    within = tuple(scale for scale in GUIDANCE_SCALES_COMPARED if scale < largest)
    return within + (largest,)


class Guidance:
    def __init__(self, context: Context):
        self.context = context
        self.scales = scales_compared(context.pipe)

    def compare_guidance(self, digit: str, seed: int):
        """The same seed at each guidance scale, a labelled row each, streamed row by row: what
        the slider does. One digit gets several samples a row, to show how alike they are."""
        digits = digits_of(digit)
        samples_per_digit = 1 if len(digits) > 1 else SAMPLES_COMPARED_OF_ONE_DIGIT
        rows = []
        with errors_shown_on_the_page():
            for settings, images, sure, variety in guidance_sweep(self.context.pipe, self.context.classifier, digits,
                                                                   seed, self.scales, samples_per_digit):
                label = f"guidance {settings.guidance_scale:g} · read as asked: {sure:.1%}"
                if variety is not None:
                    label += f" · variety {variety:.0f}"
                what = f"{len(images)} samples of {digit}" if len(digits) == 1 else "the digits 0 to 9"
                rows.append(figure(label, media.sample_grid(media.to_uint8(images), len(digits)), ROW_SIZE,
                                   alt=f"{what} from seed {seed}, {label}"))
                yield list(rows)  # a copy: each update shows the rows made so far


def build(context: Context) -> None:
    handlers = Guidance(context)
    gr.Markdown("The same seed at several guidance scales: the starting noise is identical, only the "
                "guidance scale changes. At 0 the model ignores the digit you asked for; the higher the "
                "scale, the surer the digit and the more alike the samples. Each row says how often the "
                "classifier reads its samples as the digit asked for, and, for one digit, their **variety**: "
                "the mean distance between two of its samples as the classifier sees them (0: all the same). "
                "Here guidance applies at every step, as it was first defined. "
                + guided_where(context.pipe, "The default"))
    with gr.Row():
        digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="compare-digit")
        seed = seed_box(0)
    compare = gr.Button("Compare", variant="primary", elem_id="compare")
    rows = gr.HTML(html_template=FIGURES_TEMPLATE, label="rows", show_label=False, elem_id="guidance-rows")
    announcement = live_region("compare")
    comparing = compare.click(handlers.compare_guidance, [digit, seed], rows, api_name="compare_guidance",
                              **MODEL_EVENT)
    announce(comparing, f"The comparison is ready: a row for each guidance scale, "
                        f"{', '.join(f'{scale:g}' for scale in handlers.scales)}.", announcement)
