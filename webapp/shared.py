"""What every tab shares: the handlers' context, the page's templates and style, the widgets and
event options used everywhere, error display and saving downloads."""

import logging
import os
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from diffusion import Limits, Pipeline, edit, media
from diffusion.classifier import DigitClassifier, load_classifier
from diffusion.samplers import SAMPLER_NAMES

log = logging.getLogger("mnist-diffusion")
SAMPLER_CHOICES = [(name, sampler) for sampler, name in SAMPLER_NAMES.items()]
ALL_DIGITS = "all ten"
DIGIT_CHOICES = [str(d) for d in range(10)] + [ALL_DIGITS]
MAX_UI_SEED = 2**53 - 1  # the largest integer a browser's numbers hold exactly
# What one request may ask of this demo: 10 digits x 1000 DDPM steps is about 90 s on 2 CPU cores.
LIMITS = Limits(max_guidance_scale=10.0, max_samples_per_digit=8, max_image_steps=10_000)
ROW_SIZE = 640  # about, the width of a row of pictures (the guidance comparison, the morph)
FIGURE_SIZE = 256  # about, the size of a labelled picture (the forward process, an edit's input)
# Handlers that use the model share its queue and take raw values (preprocess=False), so that the
# library's checks are the only ones: an API caller's "abc" or NaN gets the same clear message.
MODEL_EVENT = {"concurrency_id": "model", "preprocess": False, "show_progress": "hidden"}
SAVE_FAILED = ("the images were made but could not be saved for download ({reason}); "
               "the server may be out of disk space")
SWEEP_EVERY_S = 60  # how often emptied download folders are looked for
# Page-only events (a slider's range, a button's state): answered at once, not in the API.
PAGE_EVENT = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}


class Refusal(gr.Error):
    """A request the app turns away, with a sentence for whoever sent it (the page shows it, the API
    returns it, an assistant reads it) that names the setting and what is allowed. The server logs
    it in one line; tracebacks are kept for faults in the app itself."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)
        log.info("refused: %s", message)

    def __str__(self) -> str:
        return self.message  # gr.Error's own is quoted, and an assistant (MCP) reads str()


class Context:
    """What every tab's handlers work with: the pipeline, the classifier that reads what the model
    makes, the folder of the server's files (uploads arrive there, downloads are written below it),
    and the clock (injectable: tests of pacing need no real time)."""

    def __init__(self, pipe: Pipeline, files_dir: str | os.PathLike, clock=time.perf_counter,
                 classifier: DigitClassifier | None = None):
        self.pipe = pipe
        self.classifier = classifier or load_classifier(device=pipe.device)
        self.files_dir = Path(files_dir).resolve()
        self.downloads_dir = self.files_dir / "mnist-diffusion"
        self.clock = clock
        # One GIF or PNG written at a time: Python runs one thread at a time anyway, and thirty
        # writers at once kept the model's thread waiting (30 users at once: p95 2.35 s -> 2.1 s).
        self.encoding = threading.Lock()
        self.swept_at = -SWEEP_EVERY_S

    def save_downloads(self, name: str, frames: list[np.ndarray], final: np.ndarray | None = None,
                       fps: float = media.FPS, failure: str = SAVE_FAILED,
                       png_size: int = media.ANIMATION_SIZE) -> tuple[str, str | None]:
        """(GIF path, PNG path or None): an animation, and its final image if given (enlarged to
        about png_size), written atomically for download; if writing fails, the page says
        `failure`, its {reason} filled in. The files are this request's alone: they lie in a folder
        of their own named by 128 random bits, which nobody can guess and no other request shares,
        while the file keeps the readable `name` a person saves it as. Gradio deletes them on its
        schedule (webapp/__init__.py's CACHE_TTL_S); the folders it empties go here."""
        with self.encoding, errors_shown_on_the_page(failure):
            self.remove_emptied_folders()
            folder = self.downloads_dir / secrets.token_urlsafe(16)
            folder.mkdir(parents=True)
            gif_path, png_path = folder / f"{name}.gif", folder / f"{name}.png"
            media.save_animation(frames, gif_path, fps)
            if final is not None:
                media.save_png(media.enlarge(final, png_size), png_path)
        return str(gif_path), None if final is None else str(png_path)

    def remove_emptied_folders(self) -> None:
        """Every SWEEP_EVERY_S, the download folders whose files Gradio has deleted (called holding
        self.encoding, so that no folder is removed between its making and its writing)."""
        if self.clock() - self.swept_at < SWEEP_EVERY_S or not self.downloads_dir.is_dir():
            return
        self.swept_at = self.clock()
        for folder in os.scandir(self.downloads_dir):
            try:
                os.rmdir(folder.path)  # only if empty
            except OSError:
                pass

    def uploaded_picture(self, file, setting: str) -> Image.Image:
        """The picture in an upload's raw value (Gradio's file data, {"path": ...}), checked at the
        boundary: it must be a file in this server's own folder (an upload, or a result made here;
        never a path elsewhere on the server), then edit.open_picture's checks."""
        path = file.get("path") if isinstance(file, dict) else None
        if not isinstance(path, str) or not path:
            raise Refusal(f"{setting}: expected an uploaded picture (a PNG or JPEG file), not {described(file)}")
        if not Path(path).resolve().is_relative_to(self.files_dir):
            raise Refusal(f"{setting}: the picture must be uploaded to this app first (through the page, the "
                           "API client's upload, or as a data: URL from an assistant)")
        try:
            return edit.open_picture(path)  # its size checked before it is decoded
        except edit.PictureError as e:
            raise Refusal(f"{setting}: {e}") from None
        except OSError:
            raise Refusal(f"{setting}: the uploaded file could not be read: upload it again") from None


@contextmanager
def errors_shown_on_the_page(failed_write: str | None = None):
    """The library's ValueErrors, which say what is allowed, as Refusals the page shows; with
    failed_write, a failed write (OSError) too, as that message with its {reason} filled in."""
    try:
        yield
    except ValueError as e:
        raise Refusal(str(e)) from None
    except OSError as e:
        if failed_write is None:
            raise
        raise gr.Error(failed_write.format(reason=e.strerror or e)) from None  # the server's fault: its traceback logged


def described(value) -> str:
    """A caller's wrong value in a few words, for a message: its kind, never its whole text."""
    if value is None or value == {} or value == "":
        return "nothing"
    kinds = {str: "text", dict: "an object without a file's path", list: "a list", bool: "true or false",
             int: "a number", float: "a number"}
    return kinds.get(type(value), "a value of another kind")


def digits_of(choice: str, all_ten: bool = True, name: str = "digit") -> list[int]:
    """The digits of a radio button's value: "0" to "9", or (if all_ten) ALL_DIGITS; a Refusal
    naming the setting (`name`) for anything else."""
    choices = DIGIT_CHOICES if all_ten else DIGIT_CHOICES[:-1]
    if choice not in choices:
        raise Refusal(f"{name} must be one of {', '.join(choices)}, not {choice!r}")
    return list(range(10)) if choice == ALL_DIGITS else [int(choice)]


def seed_box(value: int | None = 0, label: str = "Seed", **options) -> gr.Number:
    """A seed: a whole number from 0 to the largest a browser holds exactly."""
    return gr.Number(value, precision=0, minimum=0, maximum=MAX_UI_SEED, label=label, **options)


def shown_width(image: np.ndarray, size: int) -> int:
    """The width a picture sent at 1 px per pixel is shown at: the whole-number upscale that
    brings its longer side near `size` (the scale of the downloadable GIF too)."""
    return image.shape[1] * media.crisp_scale(image.shape, size)


def animation(frames: list[np.ndarray], fps: float = media.FPS) -> dict:
    """A looping animation for the page: the GIF, and its last frame as the still shown while
    paused (and, with reduced motion, until Play)."""
    return {"src": media.data_url(media.gif_bytes(frames, fps=fps), "image/gif"), "still": media.png_data_url(frames[-1])}


def picture(frames: list[np.ndarray], alt: str, caption: str | None = None) -> dict:
    """The live picture's value: one frame as a PNG, or many as the looping animation; frames of
    x_t above x0, or with a caption, what it says."""
    shown = {"src": media.png_data_url(frames[0])} if len(frames) == 1 else animation(frames)
    return shown | {"width": shown_width(frames[0], media.ANIMATION_SIZE), "alt": alt} | (
        {"caption": caption} if caption else {})


def figure(label: str, image: np.ndarray, size: int, alt: str | None = None) -> dict:
    """A labelled picture for FIGURES_TEMPLATE; alt says what it shows where the label alone does not."""
    return {"label": label, "src": media.png_data_url(image), "width": shown_width(image, size)} | (
        {"alt": alt} if alt else {})


def live_region(name: str) -> gr.HTML:
    """Not shown: what a screen reader hears when a run starts and ends (HEAD makes it a polite live
    region), rather than every preview."""
    return gr.HTML("", elem_id=f"{name}-announcement", elem_classes=["live-region", "sr-only"], js_on_load=None)


def announce(event, said: gr.Component | str, region: gr.HTML):
    """Once event has ended, region says `said`: a component's value (a status), or a sentence."""
    if isinstance(said, str):
        event.then(lambda: said, None, region, **PAGE_EVENT)
    else:
        event.then(lambda text: text, said, region, **PAGE_EVENT)


def hand_focus(event, from_id: str, to_id: str) -> None:
    """Once event has ended, the focus goes from the button from_id (which it disabled: the browser
    drops the focus) to to_id, for those on a keyboard; focus elsewhere is left where it is."""
    event.then(None, js=f"""() => {{ const here = document.activeElement;
        if (here === document.body || here.id === "{from_id}") document.getElementById("{to_id}").focus(); }}""")


def show_on_phones(element_id: str) -> str:
    """JavaScript for a button: on a narrow screen, where the picture is below the controls, bring
    the element (the status above it) into view. It hands the event's inputs on unchanged."""
    return ("(...inputs) => { if (window.innerWidth < 700) document.querySelector('#" + element_id +
            "').scrollIntoView({behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : "
            "'smooth', block: 'start'}); return inputs; }")


def guided_where(pipe: Pipeline, subject: str) -> str:
    """A sentence on where the recommended guidance applies ("" if at every step), about subject."""
    if pipe.sampling_config.guidance_interval is None:
        return ""
    low, high = pipe.sampling_config.guidance_interval
    return f"{subject} pushes only at timesteps {low} to {high} (mid-noise), where it helps most."
