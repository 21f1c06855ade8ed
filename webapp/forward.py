"""The Forward process tab: noise a digit to any timestep in one step, see the model's guess back,
and look inside the model: its U-Net, drawn from the weights' config, and what each level of it
responds to in that x_t."""

import threading

import gradio as gr
import numpy as np
import torch

from diffusion import UNet, inside, media

from .page import FIGURES_TEMPLATE
from .shared import (DIGIT_CHOICES, FIGURE_SIZE, MODEL_EVENT, Context, announce, digits_of, errors_shown_on_the_page,
                     figure, live_region, seed_box)


MAP_SIZE = 112  # about, each feature map on the page


class Forward:
    def __init__(self, context: Context):
        self.context = context
        # The feature maps are read by hooks: on a copy of the model that only they run (one at a
        # time), so that another request's forward pass through the shared model is never caught.
        model = context.pipe.model
        self.watched_model, self.watching = UNet(model.config).to(context.pipe.device).eval(), threading.Lock()
        self.watched_model.load_state_dict(model.state_dict())
        # The tab's two events, the pictures and the feature maps, come together for each change:
        # the second takes the x_t the first made (the lock makes it wait for it) rather than its own.
        self.last_noised, self.noising = None, threading.Lock()

    def noised(self, digit: str, timestep: int, seed: int):
        """(digits, x_0, x_t, the model's one-step estimate of x_0) for the tab's settings."""
        with self.noising:
            if self.last_noised is None or self.last_noised[0] != (digit, timestep, seed):
                self.last_noised = ((digit, timestep, seed), self.make_noised(digit, timestep, seed))
            return self.last_noised[1]

    def make_noised(self, digit: str, timestep: int, seed: int):
        pipe, digits = self.context.pipe, digits_of(digit)
        with errors_shown_on_the_page():
            clean = pipe.generate(pipe.settings(digits, seed))
            # seed + 1: the noise must be fresh, and the seed's first draw was the x_T that `clean` came from.
            noisy, estimate = pipe.denoise_in_one_step(clean, pipe.settings(digits, seed + 1), timestep)
        return digits, clean, noisy, estimate

    def forward_process(self, digit: str, timestep: int, seed: int) -> tuple[list[dict], str]:
        """A generated digit x_0, noised to x_t in closed form, and the model's one-step guess of x_0."""
        pipe = self.context.pipe
        digits, clean, noisy, estimate = self.noised(digit, timestep, seed)
        alpha_bar = pipe.schedule.alphas_cumprod[timestep].item()
        labels = ("x_0: a generated digit", f"x_t: noised to t = {timestep} in one step",
                  "the model's estimate of x_0 from x_t")
        figures = [figure(label, media.sample_grid(media.to_uint8(images), len(digits)), FIGURE_SIZE,
                          alt=f"digit {digit}, seed {seed}: {label}")
                   for label, images in zip(labels, (clean, noisy, estimate))]
        details = (f"t = {timestep}: x_t = {alpha_bar ** 0.5:.3f} x_0 + {(1 - alpha_bar) ** 0.5:.3f} noise "
                   f"(alpha_bar = {alpha_bar:.3g})")
        return figures, details

    def feature_maps(self, digit: str, timestep: int, seed: int) -> list[dict]:
        """What each level of the model responds to in the tab's x_t (inside.feature_maps): a picture
        per level: its strongest channel (inside.feature_maps)."""
        digits, _, noisy, _ = self.noised(digit, timestep, seed)
        with self.watching:
            maps = inside.feature_maps(self.watched_model, noisy[:1], timestep, torch.tensor(digits[:1]))
        size = self.context.pipe.model.config.image_size
        return [figure(name, media.upscale((level[0].numpy() * 255).round().astype(np.uint8), size // level.shape[-1]),
                       MAP_SIZE, alt=f"the strongest channel of the model's {name} level for x_t of digit {digits[0]} at "
                                     f"t = {timestep}: brighter is more") for name, level in maps.items()]


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
        gr.Markdown("## Inside the model\nThe U-Net that predicts the noise, drawn from the weights' own configuration. "
                    "Below it, what each of its levels sees in x_t above: its strongest channel (the one that "
                    "varies most across the picture), from the full picture down to 7x7 and up again. At little "
                    "noise the 28x28 levels trace the strokes; at much noise only the coarse levels hold the shape.")
        gr.HTML(inside.diagram(context.pipe.model.config), elem_id="unet-diagram", padding=False)
        maps = gr.HTML(html_template=FIGURES_TEMPLATE, label="feature maps", show_label=False, elem_id="feature-maps")
    noising = gr.on([tab.select, timestep.release, digit.change, seed.submit], handlers.forward_process,
          [digit, timestep, seed], [figures, details], api_name="forward_process", trigger_mode="always_last",
          **MODEL_EVENT)
    announce(noising, details, announcement)
    gr.on([tab.select, timestep.release, digit.change, seed.submit], handlers.feature_maps, [digit, timestep, seed],
          maps, api_name="feature_maps", trigger_mode="always_last", **MODEL_EVENT)
