"""The Forward process tab: noise a digit to any timestep in one step, and see the model's guess back."""

import gradio as gr

from diffusion import media

from .page import FIGURES_TEMPLATE
from .shared import (DIGIT_CHOICES, FIGURE_SIZE, MODEL_EVENT, Context, announce, digits_of, errors_shown_on_the_page,
                     figure, live_region, seed_box)


class Forward:
    def __init__(self, context: Context):
        self.context = context

    def forward_process(self, digit: str, timestep: int, seed: int) -> tuple[list[dict], str]:
        """A generated digit x_0, noised to x_t in closed form, and the model's one-step guess of x_0."""
        pipe, digits = self.context.pipe, digits_of(digit)
        with errors_shown_on_the_page():
            clean = pipe.generate(pipe.settings(digits, seed))
            # seed + 1: the noise must be fresh, and the seed's first draw was the x_T that `clean` came from.
            noisy, estimate = pipe.denoise_in_one_step(clean, pipe.settings(digits, seed + 1), timestep)
        alpha_bar = pipe.schedule.alphas_cumprod[timestep].item()
        labels = ("x_0: a generated digit", f"x_t: noised to t = {timestep} in one step",
                  "the model's estimate of x_0 from x_t")
        figures = [figure(label, media.sample_grid(media.to_uint8(images), len(digits)), FIGURE_SIZE,
                          alt=f"digit {digit}, seed {seed}: {label}")
                   for label, images in zip(labels, (clean, noisy, estimate))]
        details = (f"t = {timestep}: x_t = {alpha_bar ** 0.5:.3f} x_0 + {(1 - alpha_bar) ** 0.5:.3f} noise "
                   f"(alpha_bar = {alpha_bar:.3g})")
        return figures, details


def build(context: Context) -> tuple[gr.Tab, tuple]:
    """The tab and its events, which run when it is opened too."""
    handlers = Forward(context)
    with gr.Tab("Forward process") as tab:
        gr.Markdown("Training adds noise in one closed-form step, q(x_t | x_0); the model learns to undo it. "
                    "Move t to noise a generated digit, and see the model's one-step estimate of the clean digit.")
        with gr.Row():
            digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="Digit")
            seed = seed_box(0)
        timestep = gr.Slider(0, context.pipe.schedule.num_timesteps - 1, value=500, step=1, precision=0,
                             label="Timestep t")
        details = gr.Markdown(label="details", show_label=False, elem_id="forward-details")
        figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="forward-figures")
        announcement = live_region("forward")
    noising = gr.on([tab.select, timestep.release, digit.change, seed.submit], handlers.forward_process,
          [digit, timestep, seed], [figures, details], api_name="forward_process", trigger_mode="always_last",
          **MODEL_EVENT)
    announce(noising, details, announcement)
