"""Live mode, a switch on the Generate tab: while it is on, every change of the digit, guidance,
sampler, steps, samples or seed shows the new final image and its reading at once, without
Generate. Only the latest change is computed when several arrive (trigger_mode="always_last")."""

import gradio as gr

from diffusion import media
from diffusion.classifier import class_probabilities

from .shared import LIMITS, Context, digits_of, errors_shown_on_the_page, picture

# The settings whose change updates the picture, in the order of Live.update's arguments.
WATCHED = ("digit", "guidance_scale", "sampler", "steps", "samples_per_digit", "seed")


class Live:
    def __init__(self, context: Context):
        self.context = context
        # Dragging the guidance changes only the later steps: the first come from memory.
        self.pipe = context.pipe.reusing_forward_passes()

    def update(self, live: bool, digit: str, guidance_scale: float, sampler: str, steps: int,
               samples_per_digit: int, seed: int | None, seed_used: int | None):
        """(picture, status, readings): the final image for these settings, or nothing while live
        mode is off. With Random seed on (no seed), the seed of the picture on the page, so that
        moving a setting changes only that setting."""
        if not live:
            return gr.skip(), gr.skip(), gr.skip()
        pipe, clock = self.pipe, self.context.clock
        seed = seed if seed is not None else seed_used if seed_used is not None else 0
        with errors_shown_on_the_page():
            settings = pipe.settings(digits_of(digit), seed, guidance_scale, sampler, steps, samples_per_digit,
                                     limits=LIMITS)
        started = clock()
        images = pipe.generate(settings)
        elapsed_s = clock() - started
        first_of_each = images[::settings.samples_per_digit]
        readings = media.final_readings(class_probabilities(self.context.classifier, first_of_each),
                                        list(settings.digits))
        shown = picture([media.sample_grid(media.to_uint8(images), len(settings.digits))],
                        f"{settings.description}: the final image, live", caption="The final image (live)")
        return shown, f"Live: {settings.description}, made in {elapsed_s * 1000:.0f} ms.", readings


def switch() -> gr.Checkbox:
    return gr.Checkbox(False, label="Live", elem_id="live-mode",
                       info="Show the final image at once whenever a setting changes, without Generate: drag the "
                            "guidance and watch the same digit sharpen. The steps before guidance starts are "
                            "remembered, not made again.")


def wire(context: Context, widgets: dict) -> None:
    """Live mode's events: turning the switch on, and every watched setting's change."""
    handlers, switch = Live(context), widgets["live_mode"]
    triggers = [switch.input] + [widgets[name].input for name in WATCHED]
    # Not queued: each change is answered in the request itself, which saved about 25 ms a change in
    # the bench (tests/live_bench.py). The model is still shared: the model thread batches the
    # forward passes of every caller (batching.SharedModel), queued or not.
    gr.on(triggers, handlers.update, [switch, *(widgets[name] for name in WATCHED), widgets["seed_used"]],
          [widgets["live"], widgets["status"], widgets["readings"]], api_visibility="private",
          trigger_mode="always_last", queue=False, preprocess=False, show_progress="hidden")
