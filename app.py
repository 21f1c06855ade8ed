"""The web demo: pick a digit and a guidance strength, watch it emerge from noise, keep the GIF.

    python app.py                                   # serves http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --weights my-weights.safetensors

GRADIO_SERVER_NAME and GRADIO_SERVER_PORT set the defaults of --host and --port. This file
only wires Gradio widgets to the `diffusion` library; `Demo` holds the handlers, so tests
can call them without a browser.
"""

import argparse
import ctypes
import errno
import os
import random
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

# The imports below take from 3 s to half a minute on a small CPU: first say why nothing shows.
if __name__ == "__main__":
    print("Starting the MNIST diffusion demo: loading PyTorch and Gradio…", flush=True)
import gradio as gr
import numpy as np
import torch

from gradio import FileData
from PIL import Image

from diffusion import DEFAULT_WEIGHTS, STEP_RANGES, Pipeline, cli, edit, media, morph
from diffusion.classifier import Classifier, StepReadings, class_probabilities, first_passing, load_classifier
from diffusion.evaluate import confidence, variety
from diffusion.pipeline import is_number

SAMPLER_CHOICES = [("DPM-Solver++", "dpmpp"), ("DDIM", "ddim"), ("DDPM", "ddpm")]
ALL_DIGITS = "all ten"
DIGIT_CHOICES = [str(d) for d in range(10)] + [ALL_DIGITS]
MAX_GUIDANCE_SCALE = 10.0
MAX_SAMPLES_PER_DIGIT = 8
MAX_UI_SEED = 2**53 - 1  # the largest integer a browser's numbers hold exactly
MAX_IMAGE_STEPS = 10_000  # images x steps in one request; 10 digits x 1000 DDPM steps is about 90 s on 2 CPU cores
# The live preview while computing (the finished animation shows every frame): up to 10 updates a
# second for a run alone; runs at the same time share 60 a second, as each update costs the server.
PREVIEW_UPDATES_PER_S = 10
PREVIEW_UPDATES_PER_S_SHARED = 60
ROW_SIZE = 640  # about, the width of a row of the guidance comparison
FORWARD_SIZE = 256  # about, the size of each picture of the forward process
GUIDANCE_SCALES_COMPARED = (0.0, 1.0, 1.5, 3.0, 5.0, 10.0)
SAMPLES_COMPARED_OF_ONE_DIGIT = 6  # a row per guidance scale shows how alike its samples are
MORPH_FRAMES = 9  # the morph's row, from its start to its end
MORPH_SIZE = 240  # about, the size of the looping morph and of the digit at a point
CANVAS_SIZE = 280  # px: the drawing canvas, and the repair's picture (a 28x28 digit at 10x)
BRUSH_SIZE = 18  # px on the canvas: about MNIST's stroke width at that scale
AS_READ = "the one it looks like"  # the edit's digit choice: the one the classifier reads in the picture
EDIT_DIGIT_CHOICES = [AS_READ] + DIGIT_CHOICES[:-1]
MASK_COLOUR = (249, 115, 22)  # the repair's mask, shown over the picture: the app's primary colour
# Requests sampling at the same time share the model's forward passes (diffusion/batching.py); up to
# MAX_QUEUE_SIZE more wait for a place. On 2 CPU cores the last of those was served within 8 s
# (README, "Serving many"); beyond, Gradio answers at once that the app is busy, to try again.
MAX_RUNS_AT_ONCE = 32
MAX_QUEUE_SIZE = 64
CACHE_TTL_S = 3600  # how long generated files stay downloadable
M_ARENA_MAX = -8  # glibc's mallopt setting for the number of memory pools (malloc.h)
# The browser scales 28 px digits up without blurring; pictures never overflow a phone's width.
CSS = """
.picture img, .figures img { image-rendering: pixelated; display: block; max-width: 100%; height: auto; margin: 0 auto; }
.picture .label, .figures figcaption { text-align: center; margin: 6px 0; }
.picture .placeholder { min-height: 480px; display: flex; align-items: center; justify-content: center; opacity: 0.7; }
.figures { display: flex; flex-wrap: wrap; justify-content: center; gap: 8px 24px; }
.figures figure { margin: 0; max-width: 100%; }
#guidance-rows figure { flex-basis: 100%; }
#status { min-height: 1.5em; text-align: center; }
#denoising .html-container, #guidance-rows .html-container, #forward-figures .html-container { padding: 0; }
#gif .empty, #png .empty, #morph-gif .empty, .download .empty { min-height: 0; height: 48px; }  /* no tall empty boxes before a run */
.edit-row .picture .placeholder { min-height: 240px; }
#picture-row { flex-wrap: wrap; justify-content: center; align-items: flex-start; }
#picture-row > div { flex: 0 1 auto; min-width: min(300px, 100%) !important; width: auto; }
#picture-row > #probabilities { flex: 1 1 300px; }  /* beside the picture, or below a wide one: the whole row */
.readings .heading { text-align: center; margin: 4px auto; max-width: 620px; }
.readings .panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 4px 16px; }
.readings figure { margin: 0 auto; width: 100%; max-width: 300px; }
.readings svg { display: block; width: 100%; height: auto; }
.readings figcaption { text-align: center; font-size: 0.9em; }
#probabilities .html-container, #morph-figures .html-container, #point-figures .html-container { padding: 0; }
@media (max-width: 640px) { .gradio-container .main { padding-left: 12px !important; padding-right: 12px !important; } }
"""


def picture_template(placeholder: str) -> str:
    """The live picture: one image, x_t above x0, with its labels outside it; before a run, what to do."""
    return """<div class="picture">${value ? `
  <p class="label">x<sub>t</sub>: the noisy sample (top half)</p>
  <img src="${value.src}" alt="${value.alt}" style="width: ${value.width}px">
  <p class="label">x&#x302;<sub>0</sub>: the model's guess of the clean digit (bottom half)</p>` :
  `<p class="placeholder">""" + placeholder + """</p>`}</div>"""


# Labelled pictures, side by side where they fit (one a row for the guidance scales).
FIGURES_TEMPLATE = """<div class="figures">${(value || []).map(figure => `<figure>
  <figcaption>${figure.label}</figcaption><img src="${figure.src}" alt="${figure.label}" style="width: ${figure.width}px">
  </figure>`).join("")}</div>"""
# What the classifier reads: a heading, then a panel (bars or a chart, as SVG) per digit.
READINGS_TEMPLATE = """<div class="readings">${value ? `<p class="heading">${value.heading}</p>
  <div class="panels">${value.panels.map(panel => `<figure>${panel.svg}<figcaption>${panel.caption}</figcaption>
  </figure>`).join("")}</div>` : ""}</div>"""


def show_on_phones(element_id: str) -> str:
    """JavaScript for a button: on a narrow screen, where the picture is below the controls, bring
    the element (the status above it) into view. It hands the event's inputs on unchanged."""
    return ("(...inputs) => { if (window.innerWidth < 700) document.querySelector('#" + element_id +
            "').scrollIntoView({behavior: 'smooth', block: 'start'}); return inputs; }")


@contextmanager
def errors_shown_on_the_page():
    """The library's ValueErrors, which say what is allowed, as messages the page shows."""
    try:
        yield
    except ValueError as e:
        raise gr.Error(str(e)) from None


def digit_of(choice: str) -> int:
    """One digit, from a radio button's value "0" to "9"."""
    if choice not in DIGIT_CHOICES[:-1]:
        raise gr.Error(f"digit must be one of {', '.join(DIGIT_CHOICES[:-1])}, not {choice!r}")
    return int(choice)


def morph_ends(start_digit: str, start_seed: int, end_digit: str, end_seed: int) -> tuple[tuple, tuple]:
    """A morph's start and end, (digit, seed) each, from the Morph tab's widgets."""
    return (digit_of(start_digit), start_seed), (digit_of(end_digit), end_seed)


def digits_of(choice: str) -> list[int]:
    if choice == ALL_DIGITS:
        return list(range(10))
    if choice not in DIGIT_CHOICES:
        raise gr.Error(f"digit must be one of {', '.join(DIGIT_CHOICES)}, not {choice!r}")
    return [int(choice)]


def shown_width(image: np.ndarray, size: int) -> int:
    """The width a picture sent at 1 px per pixel is shown at: the whole-number upscale that
    brings its longer side near `size` (the scale of the downloadable GIF too)."""
    return image.shape[1] * media.crisp_scale(image.shape, size)


def picture(frames: list[np.ndarray], alt: str) -> dict:
    """The live picture's value: one frame as a PNG, or many as the looping animation (a GIF)."""
    src = media.png_data_url(frames[0]) if len(frames) == 1 else media.data_url(media.gif_bytes(frames), "image/gif")
    return {"src": src, "width": shown_width(frames[0], media.ANIMATION_SIZE), "alt": alt}


def figure(label: str, image: np.ndarray, size: int) -> dict:
    """A labelled picture for FIGURES_TEMPLATE."""
    return {"label": label, "src": media.png_data_url(image), "width": shown_width(image, size)}


def uploaded(path: str) -> Image.Image:
    """A picture from an uploaded file, its size checked before it is decoded (edit.open_picture)."""
    try:
        return edit.open_picture(path)
    except edit.PictureError as e:
        raise gr.Error(str(e)) from None
    except OSError:
        raise gr.Error("the uploaded file could not be read: upload it again") from None


def canvas_picture(value: dict | None, part: str) -> Image.Image:
    """The picture in a Sketchpad's or ImageEditor's raw value: its "composite" (all drawn) or its "background"."""
    file = (value or {}).get(part)
    if not file:
        raise gr.Error("the canvas is empty: draw a digit first" if part == "composite" else
                       "there is no picture to repair: upload one, or start from a digit")
    return uploaded(file["path"])


def edit_digit(digit: int | None) -> str:
    """An API caller's digit as the edit's choice: None takes the digit the picture reads as."""
    return AS_READ if digit is None else str(digit)


def mask_overlay(model_input: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The model input (1, 1, 28, 28) as RGB, the part to fill in tinted with MASK_COLOUR."""
    grey = np.repeat(media.to_uint8(model_input)[0][..., None], 3, axis=2).astype(np.float32)
    tinted = 0.4 * grey + 0.6 * np.array(MASK_COLOUR, np.float32)
    return np.where(mask[0, 0].numpy()[..., None], tinted, grey).astype(np.uint8)


class Run:
    """One Generate as the page follows it: its settings, the animation's frames so far, and
    whether Stop was pressed. The handlers share it through Demo.runs, by browser session."""

    def __init__(self):
        self.settings, self.digits, self.frames = None, [], []
        self.step, self.steps, self.elapsed_s = 0, 0, 0.0
        self.sample = None  # the latest step's sample: the final image once all steps are done
        # What the classifier reads the first sample of each digit as, at the steps the animation shows.
        self.readings: StepReadings | None = None
        self.stop_requested = False


class Demo:
    """The handlers behind the widgets: each turns widget values into library calls."""

    def __init__(self, pipe: Pipeline, output_dir: str | os.PathLike, clock=time.perf_counter,
                 classifier: Classifier | None = None):
        self.pipe = pipe
        # The reader of what the model thinks each step's guess is (the shipped MNIST classifier).
        self.classifier = classifier or load_classifier(device=pipe.device)
        self.output_dir = Path(output_dir)
        self.clock = clock  # injectable, so that tests of the preview's pace need no real time
        # The run each browser session follows, from Generate's click to the run's end; kept here
        # rather than in a gr.State, whose heartbeat connection holds up the server's shutdown.
        self.runs: dict[str | None, Run] = {}
        # One run's GIF and PNG written at a time: Python runs one thread at a time anyway, and thirty
        # writers at once kept the model's thread waiting (30 users at once: p95 2.35 s -> 2.1 s).
        self.encoding = threading.Lock()

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

    def generate(self, digit: str, guidance_scale: float, sampler: str, steps: int, seed: int | None = None,
                 samples_per_digit: int = 1, request: gr.Request | None = None):
        """Stream (picture, status, GIF, PNG, seed used): a live preview while the digits emerge,
        then the whole process as a looping animation, its GIF and the final PNG. No seed (None)
        picks a random one; a seed given is always the one used."""
        session = request and request.session_hash
        run = self.runs.get(session)
        if run is None or run.settings is not None:  # not a fresh Run from Generate's click (an API call)
            run = self.runs[session] = Run()
        try:
            yield from self.follow(run, digit, guidance_scale, sampler, steps, seed, samples_per_digit)
        finally:
            if self.runs.get(session) is run:
                del self.runs[session]

    def follow(self, run: Run, digit: str, guidance_scale: float, sampler: str, steps: int, seed: int | None,
               samples_per_digit: int):
        """generate's work, with the Run that Stop can reach."""
        digits = digits_of(digit)
        if seed is None:
            seed = random.randrange(2**32)
        settings = {"guidance_scale": guidance_scale, "sampler": sampler, "steps": steps, "seed": seed,
                    "samples_per_digit": samples_per_digit}
        self.check(digits, settings)
        run.settings, run.digits, run.steps = settings, digits, steps
        if run.stop_requested:  # Stop was pressed while this request waited for its turn
            yield gr.skip(), "Stopped before it started.", gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return

        started = last_preview = self.clock()
        animation = media.denoising_animation(self.pipe.sample_steps(digits, **settings), steps, len(digits),
                                              samples_per_digit)
        first_of_each_digit = [d * samples_per_digit for d in range(len(digits))]
        run.readings = StepReadings(self.classifier)
        for step, frames in animation:
            run.frames += frames
            if frames:  # the steps the animation shows: every step of a run of up to MAX_FRAMES steps
                run.readings.add(step.index + 1, step.x0[first_of_each_digit])
            run.step, run.sample, run.elapsed_s = step.index + 1, step.x, self.clock() - started
            now = self.clock()
            preview_due = run.step < steps and (run.step == 1 or now - last_preview >= self.preview_interval())
            if not (run.stop_requested or preview_due):
                continue
            # This step's sample as a frame: the animation's last one when it shows the step.
            latest = run.frames[-1] if frames else media.denoising_frames([step.x], step.x0, len(digits))[0]
            if run.stop_requested:
                if not frames:  # the animation ends where the run stopped
                    run.frames.append(latest)
                break
            last_preview = now
            yield picture([latest], f"step {run.step} of {steps}"), self.progress(run), None, None, seed, self.readings(run)
        if run.step < steps:
            status = (f"Stopped at step {run.step} of {steps} ({run.elapsed_s:.1f} s); "
                      "the animation shows the steps made.")
        else:
            status = f"{self.describe(run)}: made in {run.elapsed_s:.2f} s on {self.pipe.device.type}"
        yield *self.result(run, status), seed, self.readings(run, finished=True)

    def preview_interval(self) -> float:
        """Seconds between a run's preview updates: the runs under way share the server's budget."""
        return max(1 / PREVIEW_UPDATES_PER_S, len(self.runs) / PREVIEW_UPDATES_PER_S_SHARED)

    @staticmethod
    def progress(run: Run) -> str:
        return f"Step {run.step} of {run.steps} · {run.elapsed_s:.1f} s"

    def readings(self, run: Run, finished: bool = False) -> dict:
        """What the classifier reads each digit's guess x0 as: while running, its latest probabilities
        as bars; once finished (or stopped), a chart of each class's probability against the step,
        with the numbers themselves for API callers. The first step its digit passes 50% is marked."""
        step_numbers, probabilities = run.readings.step_numbers, run.readings.probabilities()  # (steps, digits, 10)
        passed = first_passing(probabilities, torch.tensor(run.digits))
        panels = []
        stopped = run.step < run.steps
        for i, digit in enumerate(run.digits):
            when = "not yet over 50%" if passed[i] is None else f"passed 50% at step {step_numbers[passed[i]]}"
            if finished:  # a stopped run's chart spans the steps made
                svg = media.probability_chart(probabilities[:, i].tolist(), step_numbers,
                                              run.step if stopped else run.steps, digit, passed[i])
                if passed[i] is None:
                    when = f"not over 50% when stopped at step {run.step}" if stopped else "never passed 50%"
                caption = f"{digit}: {when} (of {run.steps} steps)"
            else:
                svg = media.probability_bars(probabilities[-1, i].tolist(), digit)
                caption = f"{digit}: {probabilities[-1, i, digit]:.0%}, {when}"
            panels.append({"svg": svg, "caption": caption})
        of_which = " (the first sample of each digit)" if run.settings["samples_per_digit"] > 1 else ""
        heading = ("What does the model think it is? The classifier's reading of x&#x302;<sub>0</sub>"
                   f"{' at each step' if finished else f', step {step_numbers[-1]} of {run.steps}'}{of_which}")
        value = {"heading": heading, "panels": panels}
        if finished:
            value |= {"digits": run.digits, "steps": step_numbers, "probabilities": probabilities.tolist()}
        return value

    def describe(self, run: Run) -> str:
        settings, digits = run.settings, run.digits
        sampler_name = {value: label for label, value in SAMPLER_CHOICES}[settings["sampler"]]
        return (f"{'Digits 0-9' if len(digits) > 1 else f'Digit {digits[0]}'} · {sampler_name}, {settings['steps']} steps"
                f" · guidance {settings['guidance_scale']:g} · seed {settings['seed']}"
                f" · {settings['samples_per_digit']} sample{'s' if settings['samples_per_digit'] > 1 else ''} per digit")

    def result(self, run: Run, status: str) -> tuple[dict, str, str, str]:
        """(picture, status, GIF path, PNG path) for a finished or stopped run: the animation of
        its frames plays in the page and downloads as the same GIF; the PNG is its latest sample
        (the final image, unless stopped)."""
        settings, digits, frames = run.settings, run.digits, list(run.frames)
        stopped = "" if run.step == run.steps else f"_stopped-at-step-{run.step}"
        name = (f"mnist-{'digits-0-9' if len(digits) > 1 else f'digit-{digits[0]}'}_{settings['sampler']}"
                f"-{settings['steps']}-steps_guidance-{settings['guidance_scale']:g}_seed-{settings['seed']}"
                f"_x{settings['samples_per_digit']}{stopped}")
        final = media.sample_grid(media.to_uint8(run.sample), len(digits))
        gif_path, png_path = self.save_downloads(name, frames, final)
        with self.encoding:
            shown = picture(frames, f"the denoising of {self.describe(run)}")
        return shown, status, str(gif_path), str(png_path)

    def start(self, request: gr.Request | None = None):
        """Generate pressed: a fresh Run for this session to follow, and Stop becomes the live button."""
        self.runs[request and request.session_hash] = Run()
        return "Waiting for the model…", gr.Button(interactive=False), gr.Button(interactive=True, variant="stop")

    def stop(self, request: gr.Request | None = None) -> gr.Button:
        """Stop pressed: the session's run ends after its current step, and its own stream shows
        the animation so far (a separate answer could arrive before the stream's last update)."""
        run = self.runs.get(request and request.session_hash)
        if run is not None:
            run.stop_requested = True
        return gr.Button(interactive=False, variant="secondary")

    def run_edit(self, image: Image.Image, mask: Image.Image | None, digit: str, strength: float, seed: int):
        """Stream (figures, picture, status, GIF path, PNG path, details) of Draw (no mask: SDEdit
        at `strength`) or Repair (fill in the mask): each step, with the 28x28 input the model gets
        (and the mask over it), then the denoising as a looping animation, and in the details the
        digit made, the digit the picture was read as and the result's class probabilities."""
        operation = "draw" if mask is None else "repair"
        with errors_shown_on_the_page():
            model_input, mask = edit.to_model_input(image, mask)
        read_as = int(class_probabilities(self.classifier, model_input).argmax())
        digits = [read_as if digit == AS_READ else digit_of(digit)]
        shown = model_input if mask is None else model_input.masked_fill(mask, -1)
        figures = [figure(f"what the model gets: read as a {read_as}" if mask is None else "what the model keeps",
                          media.to_uint8(shown)[0], FORWARD_SIZE)]
        if mask is not None:
            figures.append(figure("the part to fill in", mask_overlay(model_input, mask), FORWARD_SIZE))
        with errors_shown_on_the_page():
            if operation == "draw":
                steps = edit.draw_steps(self.pipe, model_input, digits, strength, seed)
                num_steps = len(edit.draw_timesteps(self.pipe, strength))
            else:
                steps = edit.repair_steps(self.pipe, model_input, mask, digits, seed)
                num_steps = self.pipe.sampling_config.steps
            frames, started = [], self.clock()
            for step, step_frames in media.denoising_animation(steps, num_steps, 1, 1):
                frames += step_frames
                status = f"Step {step.index + 1} of {num_steps} · {self.clock() - started:.1f} s"
                yield figures, picture(frames[-1:], status), status, None, None, None
        name = f"mnist-{operation}_digit-{digits[0]}{f'_strength-{strength:g}' if mask is None else ''}_seed-{seed}"
        gif_path, png_path = self.save_downloads(name, frames, media.to_uint8(step.x)[0])
        final_reading = class_probabilities(self.classifier, step.x)[0]
        status = (f"{'Finished' if mask is None else 'Repaired'} as a {digits[0]} in {self.clock() - started:.2f} s; "
                  f"the classifier reads it as a {int(final_reading.argmax())} ({final_reading.max():.0%} sure)")
        details = {"digit": digits[0], "picture_read_as": read_as, "probabilities": final_reading.tolist()}
        yield figures, picture(frames, f"the denoising of your {'drawing' if mask is None else 'repair'}"), status, \
            str(gif_path), str(png_path), details

    def draw_on_canvas(self, drawing: dict | None, digit: str, strength: float, seed: int):
        """Draw's button: the canvas's picture (its raw value), finished by the model."""
        for update in self.run_edit(canvas_picture(drawing, "composite"), None, digit, strength, seed):
            yield update[:5]

    def repair_in_editor(self, editor: dict | None, digit: str, seed: int):
        """Repair's button: the editor's picture with the painted part filled in."""
        image = canvas_picture(editor, "background")
        layers = [uploaded(layer["path"]) for layer in (editor or {}).get("layers") or []]
        if not layers:
            raise gr.Error("paint over the part of the digit to fill in, then press Repair")
        mask = Image.new("L", layers[0].size)
        for layer in layers:  # the painted parts of all layers
            mask.paste(255, mask=layer.getchannel("A").point(lambda alpha: 255 * (alpha > 0)))
        for update in self.run_edit(image, mask.resize(image.size, Image.Resampling.NEAREST), digit, 1.0, seed):
            yield update[:5]

    def api_draw(self, picture: FileData, digit: int | None = None, strength: float = edit.DEFAULT_STRENGTH,
                 seed: int = 0) -> tuple[FileData, FileData, dict]:
        """Finish a picture of a digit (PNG, JPEG, ...: any size, grey or colour, with or without alpha):
        it is noised `strength` of the way (above 0: tidy it; 1: a loose hint) and denoised towards
        `digit` (None: the digit it reads as). Returns the final image (PNG), the denoising (GIF),
        and the details: the digit made, the one the picture read as, the result's probabilities."""
        *_, gif, png, details = self.last(self.run_edit(uploaded(picture["path"]), None, edit_digit(digit), strength, seed))
        return png, gif, details

    def api_repair(self, picture: FileData, mask: FileData, digit: int | None = None,
                   seed: int = 0) -> tuple[FileData, FileData, dict]:
        """Fill in part of a picture of a digit: mask is a picture of the same shape, white (or opaque,
        on a transparent one) where to fill in; the rest is kept. Returns as /draw does."""
        image, painted = uploaded(picture["path"]), uploaded(mask["path"])
        *_, gif, png, details = self.last(self.run_edit(image, painted, edit_digit(digit), 1.0, seed))
        return png, gif, details

    @staticmethod
    def last(updates):
        for update in updates:
            pass
        return update

    def repair_start(self, digit: str, seed: int) -> dict:
        """The repair editor's picture: a generated digit (any, for AS_READ), CANVAS_SIZE px."""
        choice = random.Random(seed).randrange(10) if digit == AS_READ else digit_of(digit)
        image = media.to_uint8(self.pipe.generate([choice], seed=seed))[0]
        return {"background": media.enlarge(image, CANVAS_SIZE), "layers": [], "composite": None}

    @staticmethod
    def repair_from_file(file: dict | None) -> dict:
        """The repair editor's picture: Draw's finished digit (the raw value of its PNG's gr.File)."""
        if not file:
            raise gr.Error("finish a drawing in the Draw tab first")
        return {"background": file["path"], "layers": [], "composite": None}

    def save_downloads(self, name: str, frames: list[np.ndarray], final: np.ndarray) -> tuple[Path, Path]:
        """(GIF path, PNG path): the animation and the final image, written for download."""
        gif_path, png_path = self.output_dir / f"{name}.gif", self.output_dir / f"{name}.png"
        with self.encoding:
            try:
                media.save_animation(frames, gif_path)
                media.save_png(media.enlarge(final, media.ANIMATION_SIZE), png_path)
            except OSError as e:
                raise gr.Error(f"the images were made but could not be saved for download ({e.strerror or e}); "
                               "the server may be out of disk space") from None
        return gif_path, png_path

    def compare_guidance(self, digit: str, seed: int):
        """The same seed at each guidance scale, a labelled row each, streamed row by row: what
        the slider does. One digit gets several samples a row, to show how alike they are."""
        digits = digits_of(digit)
        samples_per_digit = 1 if len(digits) > 1 else SAMPLES_COMPARED_OF_ONE_DIGIT
        rows = []
        for guidance_scale in GUIDANCE_SCALES_COMPARED:
            with errors_shown_on_the_page():
                # At every step, as classifier-free guidance was first defined: the lesson of this tab.
                images = self.pipe.generate(digits, guidance_scale=guidance_scale, seed=seed,
                                            samples_per_digit=samples_per_digit,
                                            guidance_interval=self.pipe.all_timesteps)
            sure = confidence(self.classifier, images, Pipeline.labels(digits, samples_per_digit))
            label = f"guidance {guidance_scale:g} · read as asked: {sure:.1%}"
            if len(digits) == 1:  # the variety of samples of one digit (between digits it would say little)
                label += f" · variety {variety(self.classifier, images):.0f}"
            rows.append(figure(label, media.sample_grid(media.to_uint8(images), len(digits)), ROW_SIZE))
            yield list(rows)  # a copy: each update shows the rows made so far

    def forward_process(self, digit: str, timestep: int, seed: int) -> tuple[list[dict], str]:
        """A generated digit x_0, noised to x_t in closed form, and the model's one-step guess of x_0."""
        digits = digits_of(digit)
        with errors_shown_on_the_page():
            clean = self.pipe.generate(digits, seed=seed)
            # seed + 1: the noise must be fresh, and the seed's first draw was the x_T that `clean` came from.
            noisy, estimate = self.pipe.denoise_in_one_step(clean, digits, timestep, seed=seed + 1)
        alpha_bar = self.pipe.schedule.alphas_cumprod[timestep].item()
        labels = ("x_0: a generated digit", f"x_t: noised to t = {timestep} in one step",
                  "the model's estimate of x_0 from x_t")
        figures = [figure(label, media.sample_grid(media.to_uint8(images), len(digits)), FORWARD_SIZE)
                   for label, images in zip(labels, (clean, noisy, estimate))]
        details = (f"t = {timestep}: x_t = {alpha_bar ** 0.5:.3f} x_0 + {(1 - alpha_bar) ** 0.5:.3f} noise "
                   f"(alpha_bar = {alpha_bar:.3g})")
        return figures, details

    def morph(self, start_digit: str, start_seed: int, end_digit: str, end_seed: int, frames: int = MORPH_FRAMES):
        """Stream (figures, reading, GIF path): the row of frames as it denoises, then the morph
        looping there and back, its row of frames, and what the classifier reads each frame as."""
        start, end = morph_ends(start_digit, start_seed, end_digit, end_seed)
        with errors_shown_on_the_page():
            for step in morph.morph_steps(self.pipe, start, end, morph.frame_points(frames)):
                denoising = media.denoising_frames([step.x], step.x0, 1)[0]
                yield [figure(f"x_t above the model's guess of x_0, step {step.index + 1}", denoising,
                              ROW_SIZE)], f"Step {step.index + 1} of {self.pipe.sampling_config.steps}", None
        images = media.to_uint8(step.x)
        loop = media.back_and_forth(list(images))
        name = f"mnist-morph_{start[0]}-seed-{start[1]}_to_{end[0]}-seed-{end[1]}_{frames}-frames"
        gif_path = self.output_dir / f"{name}.gif"
        with self.encoding:
            try:
                media.save_animation(loop, gif_path, fps=morph.FPS)
            except OSError as e:
                raise gr.Error(f"the morph was made but could not be saved for download ({e.strerror or e})") from None
            looping = {"label": "the morph, there and back", "width": shown_width(images[0], MORPH_SIZE),
                       "src": media.data_url(media.gif_bytes(loop, fps=morph.FPS), "image/gif")}
            row = figure(f"its {frames} frames, from start (left) to end", media.grid(images, columns=frames), ROW_SIZE)
        reading = morph.reading(class_probabilities(self.classifier, step.x))
        yield [looping, row], f"The classifier reads the frames as: {reading} (in brackets: less than 50% sure)", str(gif_path)

    def morph_point(self, start_digit: str, start_seed: int, end_digit: str, end_seed: int,
                    point: float) -> tuple[list[dict], dict]:
        """(figures, readings): the digit at one point of the morph, and what the classifier reads it as."""
        if not (is_number(point) and 0 <= point <= 1):
            raise gr.Error(f"point must be a number from 0 to 1, not {point!r}")
        start, end = morph_ends(start_digit, start_seed, end_digit, end_seed)
        with errors_shown_on_the_page():
            image = morph.morph(self.pipe, start, end, [point])
        probabilities = class_probabilities(self.classifier, image)[0]
        likeliest = int(probabilities.argmax())
        readings = {"heading": "What the classifier reads it as", "panels": [{
            "svg": media.probability_bars(probabilities.tolist(), likeliest),
            "caption": f"{likeliest}: {probabilities[likeliest]:.0%}"}], "probabilities": probabilities.tolist()}
        return [figure(f"at {point:g} of the way", media.to_uint8(image)[0], MORPH_SIZE)], readings


def step_slider(sampler: str, pipe: Pipeline) -> gr.Slider:
    """The step slider for a sampler: its range, starting at the usual count (the weights' for their sampler)."""
    fewest, most, usual = STEP_RANGES[sampler]
    if sampler == pipe.sampling_config.sampler:
        usual = pipe.sampling_config.steps
    return gr.Slider(minimum=fewest, maximum=most, value=usual)


def seed_box(randomize_seed: bool, seed_used: int | None) -> gr.Number:
    """The seed box is shown only while Random seed is off, and then starts at the seed of the
    picture on the page, so that Generate makes that picture again. While hidden it is empty:
    no seed, so each run picks one."""
    if randomize_seed:
        return gr.Number(visible=False, value=None)
    return gr.Number(visible=True, value=0 if seed_used is None else seed_used)


def idle():
    return gr.Button(interactive=True), gr.Button(interactive=False, variant="secondary")


def not_generated():
    """A run that failed or was turned away (the app busy): Generate works again, and the status
    no longer says it is waiting. Gradio's message at the top of the page says what went wrong,
    for a few seconds."""
    return "Nothing was generated. If the app was busy, try again in a few seconds.", *idle()


def guided_where(recommended, subject: str) -> str:
    """A sentence on where the recommended guidance applies ("" if at every step), about subject."""
    if recommended.guidance_interval is None:
        return ""
    low, high = recommended.guidance_interval
    return f"{subject} pushes only at timesteps {low} to {high} (mid-noise), where it helps most."


def build_generate_tab(demo: Demo, pipe: Pipeline) -> tuple[gr.Radio, gr.Slider]:
    recommended = pipe.sampling_config
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="digit")
            guidance_scale = gr.Slider(0, MAX_GUIDANCE_SCALE, value=recommended.guidance_scale, step=0.05,
                                       label="Guidance scale", info="0 ignores the digit, 1 is plain conditional, "
                                       "higher pushes harder towards it. " + guided_where(recommended, "Above 1, it"),
                                       elem_id="guidance")
            sampler = gr.Radio(SAMPLER_CHOICES, value=recommended.sampler, label="Sampler", elem_id="sampler")
            # Built with the full range so API callers may use any sampler's range; the page
            # narrows it to the chosen sampler's range on load and on every change.
            steps = gr.Slider(1, pipe.schedule.num_timesteps, value=recommended.steps, step=1, precision=0,
                              label="Steps", elem_id="steps")
            samples_per_digit = gr.Slider(1, MAX_SAMPLES_PER_DIGIT, value=1, step=1, precision=0,
                                          label="Samples per digit", elem_id="samples")
            # Only the page has this box: it shows or hides the seed, and a run with no seed picks
            # one, so an API caller who passes a seed always gets that seed.
            randomize_seed = gr.Checkbox(True, label="Random seed", elem_id="random-seed",
                                         info="Each run picks a new seed, shown above the picture. Untick to "
                                              "choose one: it starts at the picture's, to make that picture again.")
            seed = gr.Number(None, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed", visible=False,
                             elem_id="seed")
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                stop = gr.Button("Stop", variant="secondary", interactive=False, elem_id="stop")
            gr.Markdown(f"One request may take up to {MAX_IMAGE_STEPS:,} image-steps (digits x samples x steps).")
        with gr.Column(scale=2):
            # Labels name the API's return values; the page shows its own captions instead.
            status = gr.Markdown(label="status", show_label=False, elem_id="status")
            # The picture travels inline, as a data URL: each update shows at once, with no second
            # request that the next update could overtake (a gr.Image would serve it as a file).
            with gr.Row(elem_id="picture-row"):  # the readings beside the picture where they fit, else below
                live = gr.HTML(html_template=picture_template("Press Generate to watch a digit emerge from noise."),
                               label="picture", show_label=False, elem_id="denoising", min_height=200)
                readings = gr.HTML(html_template=READINGS_TEMPLATE, label="probabilities", show_label=False,
                                   elem_id="probabilities")
            gr.Markdown("When a run ends, the picture plays the whole process, looping. Frames between two "
                        "steps follow that step's own prediction (no extra model calls). The classifier reads each "
                        "step's guess; the first guesses, from almost pure noise, are rough, and it tends to call "
                        "them an 8.")
            with gr.Row():
                gif = gr.File(label="Animation (GIF)", elem_id="gif")
                png = gr.File(label="Final image (PNG)", elem_id="png")
            seed_used = gr.Number(None, precision=0, label="seed", visible=False)

    quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    sampler.change(partial(step_slider, pipe=pipe), sampler, steps, **quiet)
    randomize_seed.change(seed_box, [randomize_seed, seed_used], seed, **quiet)
    started = generate.click(demo.start, None, [status, generate, stop], js=show_on_phones("status"), **quiet)
    generating = started.then(
        demo.generate, [digit, guidance_scale, sampler, steps, seed, samples_per_digit],
        [live, status, gif, png, seed_used, readings], api_name="generate", concurrency_id="model", preprocess=False,
        show_progress="hidden")
    generating.then(idle, None, [generate, stop], **quiet)
    generating.failure(not_generated, None, [status, generate, stop], **quiet)  # .then follows only success
    stop.click(demo.stop, None, stop, **quiet)
    return sampler, steps


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


def build_draw_tab(demo: Demo) -> gr.File:
    gr.Markdown("Draw a digit with the mouse or a finger, and let the model finish it. Your drawing is brought "
                "into the model's world as MNIST's digits were made: its strokes scaled to fit a 20x20 box, "
                "centred by their centre of mass in 28x28. Then it is noised part of the way (**strength**) and "
                "denoised towards the digit you pick (SDEdit). Ask for another digit at high strength, and the "
                "model keeps your layout where it can.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            canvas = gr.Sketchpad(np.full((CANVAS_SIZE, CANVAS_SIZE, 3), 255, np.uint8), label="Your drawing",
                                  canvas_size=(CANVAS_SIZE, CANVAS_SIZE), fixed_canvas=True, layers=False,
                                  transforms=(), brush=gr.Brush(BRUSH_SIZE, colors=["#000000"], color_mode="fixed"),
                                  elem_id="canvas")
            digit = gr.Radio(EDIT_DIGIT_CHOICES, value=AS_READ, label="Digit to make", elem_id="draw-digit")
            strength = gr.Slider(0.05, 1, value=edit.DEFAULT_STRENGTH, step=0.05, label="Strength", elem_id="strength",
                                 info="Low: tidy my strokes. High: use them only as a loose hint.")
            seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed", elem_id="draw-seed")
            button = gr.Button("Finish my digit", variant="primary", elem_id="draw")
        with gr.Column(scale=2):
            outputs = edit_outputs("draw", "Draw a digit, then press Finish my digit.")
    button.click(demo.draw_on_canvas, [canvas, digit, strength, seed], outputs, api_visibility="private",
                 concurrency_id="model", preprocess=False, show_progress="hidden", js=show_on_phones("draw-status"))
    return outputs[-1]


def build_repair_tab(demo: Demo, drawn: gr.File) -> None:
    gr.Markdown("Paint over part of a digit, and let the model fill that part in for the digit you pick, while "
                "the rest stays exactly as it was. At every step the model is told the kept pixels, noised to "
                "that step, so what it makes joins them.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            editor = gr.ImageEditor(demo.repair_start("3", 0), label="Paint over the part to fill in",
                                    canvas_size=(CANVAS_SIZE, CANVAS_SIZE), sources=["upload"], layers=False,
                                    transforms=(), brush=gr.Brush(BRUSH_SIZE * 2, colors=[(media.HIGHLIGHT, 0.6)],
                                                                  color_mode="fixed"), elem_id="repair-editor")
            with gr.Row():
                use_drawing = gr.Button("Use my finished drawing", size="sm", elem_id="use-drawing")
                new_digit = gr.Button("A new generated digit", size="sm", elem_id="new-digit")
            digit = gr.Radio(EDIT_DIGIT_CHOICES, value=AS_READ, label="Digit to make", elem_id="repair-digit")
            seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed", elem_id="repair-seed")
            button = gr.Button("Repair", variant="primary", elem_id="repair")
        with gr.Column(scale=2):
            outputs = edit_outputs("repair", "Paint over part of the digit, then press Repair.")
    # Queued: the page shows a gr.Error's message ("finish a drawing first") only for queued events.
    use_drawing.click(demo.repair_from_file, drawn, editor, preprocess=False, show_progress="hidden",
                      api_visibility="private")
    new_digit.click(lambda digit: demo.repair_start(digit, random.randrange(2**32)), digit, editor, preprocess=False,
                    api_visibility="private", concurrency_id="model", show_progress="hidden")
    button.click(demo.repair_in_editor, [editor, digit, seed], outputs, api_visibility="private",
                 concurrency_id="model", preprocess=False, show_progress="hidden", js=show_on_phones("repair-status"))


def build_guidance_tab(demo: Demo) -> None:
    gr.Markdown("The same seed at several guidance scales: the starting noise is identical, only the "
                "guidance scale changes. At 0 the model ignores the digit you asked for; the higher the "
                "scale, the surer the digit and the more alike the samples. Each row says how often the "
                "classifier reads its samples as the digit asked for, and, for one digit, their **variety**: "
                "the mean distance between two of its samples as the classifier sees them (0: all the same). "
                "Here guidance applies at every step, as it was first defined. "
                + guided_where(demo.pipe.sampling_config, "The default"))
    with gr.Row():
        digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="compare-digit")
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed")
    compare = gr.Button("Compare", variant="primary", elem_id="compare")
    rows = gr.HTML(html_template=FIGURES_TEMPLATE, label="rows", show_label=False, elem_id="guidance-rows")
    compare.click(demo.compare_guidance, [digit, seed], rows, api_name="compare_guidance", concurrency_id="model",
                  preprocess=False, show_progress="hidden")


def build_morph_tab(demo: Demo) -> None:
    gr.Markdown("Walk from one digit to another. **Same digit, two seeds**: the starting noise moves from "
                "one seed's to the other's along a sphere (slerp), so it stays the size of real noise, and "
                "nearby noise gives nearby digits. **Two digits, one seed**: the model is told a mix of the "
                "two, (1 - point) of the start and point of the end. Change both for both at once.")
    with gr.Row():
        with gr.Column(min_width=240):
            start_digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="Start: digit", elem_id="start-digit")
            start_seed = gr.Number(1, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Start: seed", elem_id="start-seed")
        with gr.Column(min_width=240):
            end_digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="End: digit", elem_id="end-digit")
            end_seed = gr.Number(2, precision=0, minimum=0, maximum=MAX_UI_SEED, label="End: seed", elem_id="end-seed")
    frames = gr.Slider(morph.MIN_FRAMES, morph.MAX_FRAMES, value=MORPH_FRAMES, step=1, precision=0, label="Frames",
                       elem_id="frames")
    start = gr.Button("Morph", variant="primary", elem_id="morph")
    reading = gr.Markdown(label="reading", show_label=False, elem_id="morph-status")
    figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="morph-figures")
    gif = gr.File(label="Morph (GIF)", elem_id="morph-gif")
    point = gr.Slider(0, 1, value=0.5, step=0.05, label="A point between start (0) and end (1)", elem_id="point",
                      info="Release to see the digit there, and what the classifier reads it as.")
    with gr.Row():
        point_figure = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="point-figures")
        point_readings = gr.HTML(html_template=READINGS_TEMPLATE, label="probabilities", show_label=False,
                                 elem_id="point-readings")
    ends = [start_digit, start_seed, end_digit, end_seed]
    start.click(demo.morph, [*ends, frames], [figures, reading, gif], api_name="morph", concurrency_id="model",
                preprocess=False, show_progress="hidden")
    gr.on([point.release, start.click], demo.morph_point, [*ends, point], [point_figure, point_readings],
          api_name="morph_point", concurrency_id="model", trigger_mode="always_last", preprocess=False,
          show_progress="hidden")


def build_forward_tab(demo: Demo, pipe: Pipeline) -> tuple:
    gr.Markdown("Training adds noise in one closed-form step, q(x_t | x_0); the model learns to undo it. "
                "Move t to noise a generated digit, and see the model's one-step estimate of the clean digit.")
    with gr.Row():
        digit = gr.Radio(DIGIT_CHOICES[:-1], value="3", label="Digit")
        seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_UI_SEED, label="Seed")
    timestep = gr.Slider(0, pipe.schedule.num_timesteps - 1, value=500, step=1, precision=0, label="Timestep t")
    details = gr.Markdown(label="details", show_label=False)
    figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="forward-figures")
    return digit, timestep, seed, [figures, details]


def build_app(pipe: Pipeline, max_runs_at_once: int = MAX_RUNS_AT_ONCE, max_queue_size: int = MAX_QUEUE_SIZE,
              cache_ttl_s: int = CACHE_TTL_S, clock=time.perf_counter) -> gr.Blocks:
    # Gradio deletes the frames, GIFs and PNGs it served once they are cache_ttl_s old; no analytics.
    delete_cache = (min(600, cache_ttl_s), cache_ttl_s)
    with gr.Blocks(title="MNIST diffusion", delete_cache=delete_cache, analytics_enabled=False) as app:
        demo = Demo(pipe, Path(app.GRADIO_CACHE) / "mnist-diffusion", clock)
        gr.Markdown("# Watch a digit emerge from noise\nA class-conditional diffusion model trained on MNIST. "
                    "Pick a digit and a guidance strength, press **Generate**, and watch the model denoise.")
        # "wrap": on a phone every tab keeps its visible label, instead of hiding in a "..." menu.
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Generate"):
                sampler, steps = build_generate_tab(demo, pipe)
            with gr.Tab("How guidance works"):
                build_guidance_tab(demo)
            with gr.Tab("Morph"):
                build_morph_tab(demo)
            with gr.Tab("Draw"):
                drawn = build_draw_tab(demo)
            with gr.Tab("Repair"):
                build_repair_tab(demo, drawn)
            with gr.Tab("Forward process") as forward_tab:
                digit, timestep, seed, outputs = build_forward_tab(demo, pipe)
        app.load(partial(step_slider, pipe=pipe), sampler, steps, queue=False, show_progress="hidden",
                 api_visibility="private")
        gr.on([forward_tab.select, timestep.release, digit.change, seed.submit], demo.forward_process,
              [digit, timestep, seed], outputs, api_name="forward_process", concurrency_id="model",
              trigger_mode="always_last", preprocess=False, show_progress="hidden")
        gr.api(demo.api_draw, api_name="draw", concurrency_id="model")
        gr.api(demo.api_repair, api_name="repair", concurrency_id="model")
    app.queue(max_size=max_queue_size, default_concurrency_limit=max_runs_at_once)
    return app


# How the server is launched: by main, and by the tests that serve the app in their own process.
LAUNCH_OPTIONS = {
    "css": CSS,
    "footer_links": ["api"],
    "quiet": True,  # Gradio's banner would suggest share=True, a public link this demo does not offer
    "max_file_size": edit.MAX_FILE_BYTES,  # uploads: Gradio refuses bigger files as they arrive
    "max_threads": MAX_RUNS_AT_ONCE + 40,  # threads for the runs, and to spare
}


def port(text: str) -> int:
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, not {text!r}")
    return int(text)


def check_can_listen(parser: argparse.ArgumentParser, host: str, port: int) -> None:
    """Fail in one line naming the flag, before the weights load, if the server could not listen
    on host:port (Gradio's own message would name launch()'s parameters, not ours)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        parser.error(f"argument --host: cannot resolve {host!r} ({e.strerror}); try 127.0.0.1 or 0.0.0.0")
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                parser.error(f"argument --port: port {port} is in use (by another app.py?); choose another with --port")
            if e.errno == errno.EACCES:
                parser.error(f"argument --port: port {port} needs administrator rights; choose one above 1023")
            parser.error(f"argument --host: cannot listen on {host} ({e.strerror}); try 127.0.0.1 or 0.0.0.0")


def share_memory_pools(pools: int = 2) -> None:
    """Linux's C library gives each thread that allocates a memory pool (arena) of its own, up to 8
    a core, and keeps what it frees for that thread: 100 users at once grew a fresh server by 133 MB,
    and by 76 MB with two pools. Called before any thread starts."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None
    if mallopt:
        mallopt(M_ARENA_MAX, pools)


def main() -> None:
    p = cli.ArgumentParser(prog="python app.py", description="Serve the MNIST diffusion demo.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on: 127.0.0.1 (this computer only) or 0.0.0.0 (the network)")
    p.add_argument("--port", type=port, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    args = p.parse_args()
    check_can_listen(p, args.host, args.port)

    share_memory_pools()
    print(f"Loading {args.weights}…", flush=True)
    pipe = Pipeline.load(args.weights, device=args.device, shared=True)
    print(f"Loaded the model on {pipe.device.type}.", flush=True)
    # SIGTERM (docker stop) then shuts the server down as Ctrl-C does, instead of waiting to be killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app = build_app(pipe)
    app.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, **LAUNCH_OPTIONS)
    print(f"Serving on {app.local_url} (Ctrl-C stops it)", flush=True)
    app.block_thread()  # returns once Ctrl-C or SIGTERM has closed the server
    # Leave at once: the native teardown of torch's libraries after that takes 1.2 s here,
    # which `docker stop` would wait out.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    cli.run(main, prog="python app.py")
