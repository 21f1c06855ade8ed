"""The web demo: pick a digit and a guidance strength, watch it emerge from noise, keep the GIF.

    python app.py                                   # serves http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --weights my-weights.safetensors

GRADIO_SERVER_NAME and GRADIO_SERVER_PORT set the defaults of --host and --port. This file
only wires Gradio widgets to the `diffusion` library; `Demo` holds the handlers, so tests
can call them without a browser.
"""

import argparse
import os
import random
import signal
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np

from diffusion import DEFAULT_WEIGHTS, STEP_RANGES, Pipeline, cli, media
from diffusion.pipeline import is_number

SAMPLER_CHOICES = [("DPM-Solver++", "dpmpp"), ("DDIM", "ddim"), ("DDPM", "ddpm")]
ALL_DIGITS = "all ten"
DIGIT_CHOICES = [str(d) for d in range(10)] + [ALL_DIGITS]
MAX_GUIDANCE_SCALE = 10.0
MAX_SAMPLES_PER_DIGIT = 8
MAX_UI_SEED = 2**53 - 1  # the largest integer a browser's numbers hold exactly
MAX_IMAGE_STEPS = 10_000  # images x steps in one request; 10 digits x 1000 DDPM steps is about 90 s on 2 CPU cores
STREAM_EVERY_STEP_UP_TO = 100  # longer runs stream at most MAX_UPDATES_PER_S frames, so the browser keeps up
MAX_UPDATES_PER_S = 20
MAX_GIF_FRAMES = 100  # evenly spaced over the whole process
MIN_GIF_SECONDS = 2.0  # short runs play slower, so each step can be seen
GUIDANCE_SCALES_COMPARED = (0.0, 1.0, 1.5, 3.0, 5.0, 10.0)
MAX_QUEUE_SIZE = 16  # waiting requests; more get Gradio's "Queue is full" message
CACHE_TTL_S = 3600  # how long generated files stay downloadable
# The browser scales 28 px digits up without blurring.
CSS = ".pixelated img { image-rendering: pixelated; } #denoising img { width: 100%; max-width: 640px; }"
GIF_WIDTH = 640  # about; GIF viewers smooth what they enlarge, so the GIF's frames are upscaled here




@contextmanager
def errors_shown_on_the_page():
    """The library's ValueErrors, which say what is allowed, as messages the page shows."""
    try:
        yield
    except ValueError as e:
        raise gr.Error(str(e)) from None


def digits_of(choice: str) -> list[int]:
    if choice == ALL_DIGITS:
        return list(range(10))
    if choice not in DIGIT_CHOICES:
        raise gr.Error(f"digit must be one of {', '.join(DIGIT_CHOICES)}, not {choice!r}")
    return [int(choice)]


class Demo:
    """The handlers behind the widgets: each turns widget values into library calls."""

    def __init__(self, pipe: Pipeline, output_dir: str | os.PathLike):
        self.pipe = pipe
        self.output_dir = Path(output_dir)

    def check(self, digits: list[int], settings: dict) -> None:
        """The library's checks, the demo's ranges and its work cap, as messages the page shows.

        The events take raw values (preprocess=False), so that this is the one place that
        checks them: an API caller's "abc" or NaN gets the same clear message as anyone."""
        guidance_scale = settings["guidance_scale"]
        if not (is_number(guidance_scale) and 0 <= guidance_scale <= MAX_GUIDANCE_SCALE):
            raise gr.Error(f"guidance_scale must be a number from 0 to {MAX_GUIDANCE_SCALE:g}, not {guidance_scale!r}")
        with errors_shown_on_the_page():
            self.pipe.validate(digits, **settings)
        if not settings["samples_per_digit"] <= MAX_SAMPLES_PER_DIGIT:
            raise gr.Error(f"samples per digit go from 1 to {MAX_SAMPLES_PER_DIGIT}, not {settings['samples_per_digit']}")
        image_steps = len(digits) * settings["samples_per_digit"] * settings["steps"]
        if image_steps > MAX_IMAGE_STEPS:
            raise gr.Error(f"that is {image_steps:,} image-steps (images x steps); this demo allows {MAX_IMAGE_STEPS:,}. "
                           "Ask for fewer samples or steps.")

    def generate(self, digit: str, guidance_scale: float, sampler: str, steps: int, seed: int,
                 randomize_seed: bool, samples_per_digit: int, progress=gr.Progress()):
        """Stream (live frame as a PNG data URL, final image, GIF, PNG, details, seed) while the digits emerge."""
        digits = digits_of(digit)
        if not isinstance(randomize_seed, bool):
            raise gr.Error(f"randomize_seed must be true or false, not {randomize_seed!r}")
        if randomize_seed:
            seed = random.randrange(2**32)
        settings = {"guidance_scale": guidance_scale, "sampler": sampler, "steps": steps, "seed": seed,
                    "samples_per_digit": samples_per_digit}
        self.check(digits, settings)

        started = time.perf_counter()
        gif_steps = set(np.linspace(0, steps - 1, min(steps, MAX_GIF_FRAMES)).round().astype(int).tolist())
        gif_frames, last_update = [], 0.0
        for step in self.pipe.sample_steps(digits, **settings):
            progress((step.index + 1, steps), desc="denoising")
            stream = steps <= STREAM_EVERY_STEP_UP_TO or time.perf_counter() - last_update >= 1 / MAX_UPDATES_PER_S
            if stream or step.index in gif_steps:
                frame = media.denoising_frame(step.x, step.x0, len(digits))  # 1 px per pixel: small to send
            if step.index in gif_steps:
                gif_frames.append(media.enlarge(frame, GIF_WIDTH))
            if stream:
                last_update = time.perf_counter()
                yield media.png_data_url(frame), None, None, None, f"step {step.index + 1} of {steps} (t = {step.timestep})", seed
        elapsed_s = time.perf_counter() - started

        grid = media.sample_grid(media.to_uint8(step.x), len(digits))
        final = media.enlarge(grid)
        name = (f"mnist-{'digits-0-9' if len(digits) > 1 else f'digit-{digits[0]}'}_{sampler}-{steps}-steps"
                f"_guidance-{guidance_scale:g}_seed-{seed}_x{samples_per_digit}")
        gif_path, png_path = self.output_dir / f"{name}.gif", self.output_dir / f"{name}.png"
        try:
            media.save_gif(gif_frames, gif_path, fps=min(MAX_UPDATES_PER_S, len(gif_frames) / MIN_GIF_SECONDS))
            media.save_png(final, png_path)
        except OSError as e:
            raise gr.Error(f"the images were made but could not be saved for download ({e.strerror or e}); "
                           "the server may be out of disk space") from None
        sampler_name = {value: label for label, value in SAMPLER_CHOICES}[sampler]
        details = (f"**{'Digits 0-9' if len(digits) > 1 else f'Digit {digits[0]}'}**, {sampler_name}, {steps} steps, "
                   f"guidance {guidance_scale:g}, seed {seed}, {samples_per_digit} per digit: "
                   f"{elapsed_s:.2f} s on {self.pipe.device.type}")
        yield media.png_data_url(frame), final, str(gif_path), str(png_path), details, seed

    def compare_guidance(self, digit: str, seed: int) -> list[tuple[np.ndarray, str]]:
        """The same seed at several guidance scales, for the gallery: what the slider does."""
        digits = digits_of(digit)
        pictures = []
        for guidance_scale in GUIDANCE_SCALES_COMPARED:
            with errors_shown_on_the_page():
                images = media.to_uint8(self.pipe.generate(digits, guidance_scale=guidance_scale, seed=seed))
            grid = media.sample_grid(images, len(digits))
            pictures.append((media.enlarge(grid, 160), f"guidance {guidance_scale:g}"))
        return pictures

    def forward_process(self, digit: str, timestep: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """A generated digit x_0, noised to x_t in closed form, and the model's one-step guess of x_0."""
        digits = digits_of(digit)
        with errors_shown_on_the_page():
            clean = self.pipe.generate(digits, seed=seed)
            # seed + 1: the noise must be fresh, and the seed's first draw was the x_T that `clean` came from.
            noisy, estimate = self.pipe.denoise_in_one_step(clean, digits, timestep, seed=seed + 1)
        alpha_bar = self.pipe.schedule.alphas_cumprod[timestep].item()
        grids = [media.sample_grid(media.to_uint8(images), len(digits)) for images in (clean, noisy, estimate)]
        pictures = [media.enlarge(grid, 256) for grid in grids]
        details = (f"t = {timestep}: x_t = {alpha_bar ** 0.5:.3f} x_0 + {(1 - alpha_bar) ** 0.5:.3f} noise "
                   f"(alpha_bar = {alpha_bar:.3g})")
        return *pictures, details


def step_slider(sampler: str, pipe: Pipeline) -> gr.Slider:
    """The step slider for a sampler: its range, starting at the usual count (the weights' for their sampler)."""
    fewest, most, usual = STEP_RANGES[sampler]
    if sampler == pipe.sampling_config.sampler:
        usual = pipe.sampling_config.steps
    return gr.Slider(minimum=fewest, maximum=most, value=usual)


def build_app(pipe: Pipeline, max_queue_size: int = MAX_QUEUE_SIZE, cache_ttl_s: int = CACHE_TTL_S) -> gr.Blocks:
    recommended = pipe.sampling_config
    # Gradio deletes the frames, GIFs and PNGs it served once they are cache_ttl_s old; no analytics.
    delete_cache = (min(600, cache_ttl_s), cache_ttl_s)
    with gr.Blocks(title="MNIST diffusion", delete_cache=delete_cache, analytics_enabled=False) as app:
        demo = Demo(pipe, Path(app.GRADIO_CACHE) / "mnist-diffusion")
        gr.Markdown("# Watch a digit emerge from noise\nA class-conditional diffusion model trained on MNIST. "
                    "Pick a digit and a guidance strength, press **Generate**, and watch the model denoise.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="digit")
                    guidance_scale = gr.Slider(0, MAX_GUIDANCE_SCALE, value=recommended.guidance_scale, step=0.1,
                                               label="Guidance scale", info="0 ignores the digit, 1 is plain conditional, "
                                               "higher pushes harder towards it", elem_id="guidance")
                    sampler = gr.Radio(SAMPLER_CHOICES, value=recommended.sampler, label="Sampler", elem_id="sampler")
                    # Built with the full range so API callers may use any sampler's range; the page
                    # narrows it to the chosen sampler's range on load and on every change.
                    steps = gr.Slider(1, pipe.schedule.num_timesteps, value=recommended.steps, step=1, label="Steps",
                                      elem_id="steps")
                    samples_per_digit = gr.Slider(1, MAX_SAMPLES_PER_DIGIT, value=1, step=1, label="Samples per digit")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed")
                        randomize_seed = gr.Checkbox(True, label="Random seed", info="a fresh seed each time, shown here")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop = gr.Button("Stop", variant="stop")
                    gr.Markdown(f"One request may take up to {MAX_IMAGE_STEPS:,} image-steps "
                                "(digits x samples x steps).")
                with gr.Column(scale=2):
                    # The frame travels inline, as a data URL: each update shows at once, with no second
                    # request that the next update could overtake (a gr.Image would serve it as a file).
                    frame = gr.HTML(html_template='${value ? `<img src="${value}" alt="denoising frame">` : ""}',
                                    label="Denoising: the noisy x_t (left) and the model's guess of the clean digit "
                                    "x_0 (right)", show_label=True, container=True, min_height=180,
                                    elem_id="denoising", elem_classes="pixelated")
                    details = gr.Markdown()
                    result = gr.Image(label="Result", format="png", elem_classes="pixelated", buttons=["download"],
                                      elem_id="result")
                    with gr.Row():
                        gif = gr.File(label="Animation (GIF)", elem_id="gif")
                        png = gr.File(label="Final image (PNG)")
        with gr.Tab("How guidance works"):
            gr.Markdown("The same seed at several guidance scales: the starting noise is identical, only the "
                        "guidance scale changes. At 0 the model ignores the digit you asked for.")
            with gr.Row():
                compare_digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit")
                compare_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed")
            compare = gr.Button("Compare", variant="primary")
            gallery = gr.Gallery(label="Guidance scales", columns=len(GUIDANCE_SCALES_COMPARED), format="png",
                                 elem_classes="pixelated")
        with gr.Tab("Forward process") as forward_tab:
            gr.Markdown("Training adds noise in one closed-form step, q(x_t | x_0); the model learns to undo it. "
                        "Move t to noise a generated digit, and see the model's one-step estimate of the clean digit.")
            with gr.Row():
                forward_digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="Digit")
                forward_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed")
            timestep = gr.Slider(0, pipe.schedule.num_timesteps - 1, value=500, step=1, label="Timestep t")
            forward_details = gr.Markdown()
            with gr.Row():
                clean = gr.Image(label="x_0: a generated digit", format="png", elem_classes="pixelated")
                noisy = gr.Image(label="x_t: noised in one step", format="png", elem_classes="pixelated")
                estimate = gr.Image(label="the model's estimate of x_0 from x_t", format="png", elem_classes="pixelated")

        slider_for = partial(step_slider, pipe=pipe)
        app.load(slider_for, sampler, steps, queue=False, api_visibility="private")
        sampler.change(slider_for, sampler, steps, queue=False, api_visibility="private")
        generating = generate.click(
            demo.generate, [digit, guidance_scale, sampler, steps, seed, randomize_seed, samples_per_digit],
            [frame, result, gif, png, details, seed], api_name="generate", concurrency_id="model", preprocess=False)
        stop.click(None, cancels=[generating])
        compare.click(demo.compare_guidance, [compare_digit, compare_seed], gallery, api_name="compare_guidance",
                      concurrency_id="model", preprocess=False)
        gr.on([forward_tab.select, timestep.release, forward_digit.change, forward_seed.submit], demo.forward_process,
              [forward_digit, timestep, forward_seed], [clean, noisy, estimate, forward_details],
              api_name="forward_process", concurrency_id="model", trigger_mode="always_last", preprocess=False)
    # One model on a few CPU cores: requests take turns rather than slow each other down.
    app.queue(max_size=max_queue_size, default_concurrency_limit=1)
    return app


def port(text: str) -> int:
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, not {text!r}")
    return int(text)


def main() -> None:
    p = cli.ArgumentParser(prog="python app.py", description="Serve the MNIST diffusion demo.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=port, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    p.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    args = p.parse_args()

    pipe = Pipeline.load(args.weights, device=args.device)
    print(f"Loaded {args.weights} on {pipe.device.type}", flush=True)
    # SIGTERM (docker stop) then shuts the server down as Ctrl-C does, instead of waiting to be killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    build_app(pipe).launch(server_name=args.host, server_port=args.port, css=CSS, footer_links=["api"])
    # launch returns once Ctrl-C or SIGTERM has closed the server. Leave at once: the native
    # teardown of torch's libraries after that takes 1.2 s here, which `docker stop` would wait out.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    cli.run(main, prog="python app.py")
