"""Editing with the denoiser: a picture of your own, finished or repaired by the model.

    python -m diffusion.edit draw my-three.png --digit 8 --strength 0.7 --out eight.png --gif eight.gif
    python -m diffusion.edit repair my-three.png --mask bottom-half.png --out repaired.png

- `open_picture` reads an uploaded file, checking its size and pixel count before decoding it.
- `to_model_input` brings any picture of a digit (a drawing, a scan, a phone's photo of paper:
  `paper.ink` finds its ink) into the model's world the way MNIST's digits were made (LeCun et
  al., "The MNIST database"): the strokes' bounding box scaled, keeping its proportions, to fit a
  20x20 box, then placed so that the strokes' centre of mass is at the centre of the 28x28 image. It also evens out a thin pen: strokes much thinner than MNIST's (a
  mouse's one-pixel line) are thickened towards MNIST's median width. `read_digit` reads the
  digit it shows, and refuses a picture the classifier is unsure of.
- `draw_steps` is SDEdit (Meng et al. 2022): noise the picture part of the way, then denoise it
  towards the digit asked for. `repair_steps` is inpainting: the model fills in a masked part,
  while the kept pixels are given to it at every step (samplers.with_known_pixels).
Both yield the pipeline's Steps, so streaming and GIFs work as for sampling.
"""

import ctypes
import math
import os
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from . import cli, style
from .classifier import DEFAULT_PATH as CLASSIFIER_PATH
from .classifier import class_probabilities, load_classifier
from .media import denoising_animation, enlarge, save_animation, save_png, to_uint8
from .paper import ink
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .samplers import Steps, with_known_pixels
from .settings import SettingError, Settings, is_number

IMAGE_SIZE = 28
DIGIT_BOX = 20  # px: the longer side of a digit's strokes in MNIST
MIN_INK = 0.1  # of the strongest stroke: fainter pixels are paper, not ink, when finding the strokes' box
FAINTEST = 0.15  # the least darkness of a picture's strokes, relative to their paper (paper.ink)
# MNIST's stroke width, in pixels at 28x28: 2.35 at the median, 1.56 at the 5th percentile (the first
# 2,000 test digits, by pen_width). A thinner pen is thickened towards the median, all the way from THIN_PEN.
MNIST_STROKE_WIDTH, THINNEST, THIN_PEN = 2.35, 1.56, 1.0
MEASURED_SCALE = 3  # pixels a pixel of 28x28, at most, where a pen's width is measured
# Uploads: a phone photo of a digit on paper passes (24 MP); a 10,000 x 10,000 picture does not,
# and is turned away before it is decoded (decoding would take 400 MB).
MAX_FILE_BYTES = 20_000_000
MAX_PIXELS = 25_000_000
WORK_SIDE = 1024  # px: larger pictures are reduced to this before their strokes are found
SMALLEST_SIDE = 280  # px: smaller pictures are enlarged to this before their strokes are found
BIG_PICTURE = 512 * 512  # pixels: after such a picture's ink is found, its freed memory goes back to the system
# The memory uploads take at once, all requests together (MemoryBudget): three of the largest
# pictures decoding (4 bytes a pixel, at most), or three finding the ink in a picture reduced to
# WORK_SIDE (paper.ink: 78 bytes a pixel at its peak, measured with tracemalloc).
UPLOADS_AT_ONCE_BYTES = 3 * 4 * MAX_PIXELS
DECODED_BYTES_PER_PIXEL, INK_BYTES_PER_PIXEL = 4, 90
# Reading a picture's digit (rather than being told it): the classifier must be at least this sure,
# so that a picture of something else is not made into an invented digit.
SURE = 0.5
# Draw's defaults: a drawing noised 70% of the way keeps its layout and comes out MNIST-like. It has
# fewer steps left to become the digit asked for than a sample from noise, and stronger guidance
# makes up for it: the worst of tests/edit_survey.py's four pens read as asked 97.4% at guidance
# 1.5, 98.6% at 3 (docs/edits-and-morphs.md).
DEFAULT_STRENGTH = 0.7
DRAW_GUIDANCE_SCALE = 3.0


class PictureError(ValueError):
    """A picture that cannot be used: not an image, too large, or without strokes."""


class EmptyImageError(PictureError):
    """A picture with no strokes in it: empty, one flat colour, or marks too faint to be ink."""


class NotADigitError(PictureError):
    """A picture that the classifier cannot read as a digit with confidence (SURE)."""


class MemoryBudget:
    """Memory that uploads may take at once, across all threads: a picture's decoding, or the finding
    of its ink, waits until its bytes fit, so that many big uploads at once take their turns rather
    than the server's memory. A need of the whole budget or more goes alone. The two are never
    nested, so a thread waits holding nothing."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.in_use = max_bytes, 0
        self.changed = threading.Condition()

    @contextmanager
    def taken(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.max_bytes)
        with self.changed:
            self.changed.wait_for(lambda: self.in_use + nbytes <= self.max_bytes)
            self.in_use += nbytes
        try:
            yield
        finally:
            with self.changed:
                self.in_use -= nbytes
                self.changed.notify_all()


UPLOADS = MemoryBudget(UPLOADS_AT_ONCE_BYTES)


def open_picture(path: str | os.PathLike) -> Image.Image:
    """An uploaded picture (PNG, JPEG, WebP, ...: grey or colour, with or without alpha), its size and
    pixel count checked before decoding, turned upright by its EXIF tag and reduced to at most
    WORK_SIDE px a side. Decoding takes its memory from the UPLOADS budget. Raises PictureError saying
    what is wrong."""
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise PictureError(f"the file is {size / 1e6:.0f} MB; pictures may be up to {MAX_FILE_BYTES / 1e6:.0f} MB")
    too_many = f"pictures may have up to {MAX_PIXELS / 1e6:.0f} million pixels (a digit needs far fewer: 28 x 28)"
    try:
        with warnings.catch_warnings():  # Pillow's own warning about big pictures: they are refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError:  # Pillow refuses over 179 million pixels as it opens
        raise PictureError(f"the picture is too large: {too_many}") from None
    except (OSError, SyntaxError, ValueError):
        raise PictureError("the file is not a picture this app can read: upload a PNG or JPEG") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise PictureError(f"the picture is {width:,} x {height:,} pixels; {too_many}")
    try:
        with UPLOADS.taken(DECODED_BYTES_PER_PIXEL * width * height):
            image.draft("RGB", (WORK_SIDE, WORK_SIDE))  # a JPEG decodes straight at a reduced size
            image.thumbnail((WORK_SIDE, WORK_SIDE))  # decodes, then reduces, in place
            image = ImageOps.exif_transpose(image)  # turned once reduced: no full-size copy
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise PictureError("the file is damaged or not a picture this app can read: upload a PNG or JPEG") from None
    return image


def release_freed_memory() -> None:
    """Give the memory that a big picture's decoding and ink freed back to the system: the C library
    keeps freed blocks for later, and forty big pictures' worth stayed with the process."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform == "linux" else None
    if trim:
        trim(0)


def read_digit(classifier, model_input: torch.Tensor, sure: float = SURE,
               instead: str = "choose the digit to make") -> int:
    """The digit that a model input (1, 1, 28, 28) shows, as the classifier reads it. Raises
    NotADigitError where it gives no digit at least `sure`: a picture of something else, or of an
    empty page's printed lines, is not made into an invented digit. `instead`: what else the
    person can do, for the message."""
    probabilities = class_probabilities(classifier, model_input)[0]
    if probabilities.max() < sure:
        raise NotADigitError(f"this does not look like a digit: the classifier is at most {probabilities.max():.0%} sure "
                             f"(it reads a {int(probabilities.argmax())}) and asks for {sure:.0%}. Upload a clear "
                             f"picture of one digit, or {instead}.")
    return int(probabilities.argmax())


def pen_width(amount: np.ndarray) -> float:
    """The strokes' width in pixels of the picture, as style.stroke_width measures it on where they
    are more than half ink: a blurred 28x28 digit and a crisp drawing of any size alike."""
    return style.stroke_width((amount > 0.5).astype(np.float64))


def thicken_thin_strokes(amount: np.ndarray, scale: float) -> np.ndarray:
    """Strokes thinner than MNIST's THINNEST grown (a maximum over a square) towards MNIST's median
    width; `scale` is the picture's pixels per pixel of 28x28. A pen of THIN_PEN or less is grown to
    the median; between it and THINNEST, the less the nearer THINNEST, so that a pen just either side
    of it comes out alike. Thick strokes are left as they are: thinning them broke the narrow parts
    of 8s and 9s (docs/edits-and-morphs.md). The width is measured with the picture reduced to at
    most MEASURED_SCALE pixels a pixel of 28x28: on an enlargement's big staircase edges it would
    come out thinner, at 28x28 a thin pen's faint line would not count."""
    reduction = max(scale / MEASURED_SCALE, 1)
    rows, columns = amount.shape
    reduced = Image.fromarray(amount.astype(np.float32)).resize(
        (max(1, round(columns / reduction)), max(1, round(rows / reduction))), Image.Resampling.BOX)
    width = pen_width(np.asarray(reduced)) / (scale / reduction)  # at 28x28
    if width >= THINNEST or width == 0:
        return amount
    wanted = width + (MNIST_STROKE_WIDTH - width) * min((THINNEST - width) / (THINNEST - THIN_PEN), 1)
    growth = round((wanted - width) * scale / 2)  # pixels a side
    if growth < 1:
        return amount
    return F.max_pool2d(torch.from_numpy(amount)[None, None], 2 * growth + 1, 1, growth)[0, 0].numpy()


def enlarged_to(image: Image.Image, side: int) -> Image.Image:
    """A picture whose longer side is under `side`, enlarged by the whole number that brings it
    there, each pixel a square of them: a 28 px digit is then found ink in just as its 280 px
    enlargement is, for the ink's shades are judged by pixels and their neighbours."""
    scale = math.ceil(side / max(image.size))
    return image if scale <= 1 else image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def strokes_box(amount: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom and right exclusive, of the pixels with ink."""
    rows, columns = np.nonzero(amount >= MIN_INK)
    return rows.min(), rows.max() + 1, columns.min(), columns.max() + 1


def region(array: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The square box (left, top, right, bottom, in pixels, may reach outside the array: zeros there)
    of a float array, resampled to size x size, each pixel the mean of the area it covers."""
    pad = int(math.ceil(max(-box[0], -box[1], box[2] - array.shape[1], box[3] - array.shape[0], 0))) + 1
    padded = np.pad(array.astype(np.float32), pad)
    shifted = tuple(edge + pad for edge in box)
    return np.asarray(Image.fromarray(padded).resize((size, size), Image.Resampling.BOX, box=shifted))


def to_model_input(image: Image.Image, mask: Image.Image | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A picture of a digit as the model's input (1, 1, 28, 28) in [-1, 1], made as MNIST's digits
    were (see the module's docstring), with the strongest stroke at full brightness; and, given a
    mask of the same size (its painted or white part is to be filled in), the mask carried along
    the same way as a bool (1, 1, 28, 28), True where the model fills in.
    Raises EmptyImageError for a picture without strokes. Finding the ink takes its memory from the
    UPLOADS budget."""
    pixels = image.width * image.height + (0 if mask is None else mask.width * mask.height)
    try:
        with UPLOADS.taken(INK_BYTES_PER_PIXEL * pixels):
            return mnist_style_input(image, mask)
    finally:
        if pixels > BIG_PICTURE:
            release_freed_memory()


def mnist_style_input(image: Image.Image, mask: Image.Image | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """to_model_input's work, as its docstring says."""
    amount = ink(enlarged_to(image, SMALLEST_SIDE))
    strongest = amount.max()
    if strongest - amount.min() < FAINTEST:
        raise EmptyImageError(f"the picture is empty or one flat colour, or its marks take less than {FAINTEST:.0%} of "
                              "the paper's light: draw or upload a digit")
    amount = amount / strongest
    top, bottom, left, right = strokes_box(amount)
    amount = thicken_thin_strokes(amount, max(bottom - top, right - left) / DIGIT_BOX)
    top, bottom, left, right = strokes_box(amount)
    scale = DIGIT_BOX / max(bottom - top, right - left)  # 28x28 pixels per pixel of the picture
    # Where the box goes in 28x28: its top-left corner at whole pixels, so that its edges fall on
    # pixel edges and no ink spills outside it, with the strokes' centre of mass nearest the centre.
    ys, xs = np.indices(amount.shape)
    centre_y = ((ys + 0.5) * amount).sum() / amount.sum()
    centre_x = ((xs + 0.5) * amount).sum() / amount.sum()
    row = np.clip(round(IMAGE_SIZE / 2 - (centre_y - top) * scale), 0, IMAGE_SIZE - math.ceil((bottom - top) * scale))
    column = np.clip(round(IMAGE_SIZE / 2 - (centre_x - left) * scale), 0, IMAGE_SIZE - math.ceil((right - left) * scale))
    box = (left - column / scale, top - row / scale, left + (IMAGE_SIZE - column) / scale, top + (IMAGE_SIZE - row) / scale)
    digit = region(amount, box, IMAGE_SIZE).clip(0, 1)
    model_input = torch.from_numpy(digit / digit.max() * 2 - 1).float()[None, None]
    if mask is None:
        return model_input, None
    (width, height), (mask_width, mask_height) = image.size, mask.size
    if abs(mask_width / mask_height - width / height) > 0.02 * width / height:
        raise PictureError(f"the mask must have the picture's shape, {width} x {height}, not {mask_width} x {mask_height}")
    rgba = np.asarray(mask.convert("RGBA").resize(amount.shape[::-1], Image.Resampling.NEAREST))  # as the ink's
    # Painted: the opaque part of a transparent mask (a brush's layer), else its light part.
    painted = rgba[..., 3] > 0 if rgba[..., 3].min() < 128 else rgba[..., :3].mean(axis=2) >= 128
    if painted.all():  # the whole picture: around it too, where the 28x28 input reaches past its edges
        return model_input, torch.ones_like(model_input, dtype=torch.bool)
    return model_input, torch.from_numpy(region(painted.astype(np.float32), box, IMAGE_SIZE) > 0.5)[None, None]


def mask_from_layers(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """A mask (white where to fill in) from an image editor's brush layers: whatever is painted on
    any of them (not transparent), at the picture's size."""
    mask = Image.new("L", layers[0].size)
    for layer in layers:
        mask.paste(255, mask=layer.getchannel("A").point(lambda alpha: 255 * (alpha > 0)))
    return mask.resize(size, Image.Resampling.NEAREST)


PARTS = ("top half", "bottom half", "left half", "right half")


def part_mask(part: str, size: tuple[int, int]) -> Image.Image:
    """A mask (white where to fill in) of one of PARTS of a picture of `size` (width, height): the
    keyboard's way to say what to repair, where a brush needs a pointer."""
    if part not in PARTS:
        raise PictureError(f"the part to fill in must be one of {', '.join(PARTS)}, not {part!r}")
    width, height = size
    box = {"top half": (0, 0, width, height // 2), "bottom half": (0, height // 2, width, height),
           "left half": (0, 0, width // 2, height), "right half": (width // 2, 0, width, height)}[part]
    mask = Image.new("L", size)
    mask.paste(255, box)
    return mask


def kept_pixels(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """What a repair keeps of pictures (N, 1, 28, 28): the part to fill in (masks True) blanked to black."""
    return images.masked_fill(masks, -1)


def draw_settings(pipe: Pipeline, digits: list[int], seed: int = 0, **options) -> Settings:
    """Draw's settings: guidance DRAW_GUIDANCE_SCALE at every step (its strength and guidance were
    chosen together, on measurement), unless options say otherwise; the rest as Pipeline.settings."""
    defaults = {"guidance_scale": DRAW_GUIDANCE_SCALE, "guidance_interval": pipe.all_timesteps}
    return pipe.settings(digits, seed, **defaults | {name: value for name, value in options.items() if value is not None})


def draw_timesteps(pipe: Pipeline, strength: float, steps: int) -> list[int]:
    """Draw's timesteps: from t0 = strength (T - 1) down, strength x the sampler's steps (at least one).
    Raises SettingError for a strength out of range."""
    if not (is_number(strength) and math.isfinite(strength) and 0 < strength <= 1):
        raise SettingError("strength", "a number above 0 and at most 1", strength)
    start = round(strength * (pipe.schedule.num_timesteps - 1))
    return pipe.schedule.timesteps(min(start + 1, max(1, round(strength * steps))), start=start)


def draw_steps(pipe: Pipeline, images: torch.Tensor, settings: Settings, strength: float = DEFAULT_STRENGTH) -> Steps:
    """SDEdit (Meng et al. 2022, Alg. 1): noise pictures (N, 1, 28, 28) in [-1, 1] part of the way,
    to t0 = strength (T - 1) with q(x_t0 | x_0), then denoise them towards the settings' digits
    (one per picture) from t0, over draw_timesteps. Strength near 0 tidies the strokes; at 1 the
    picture is only a loose hint. Yields the pipeline's Steps."""
    timesteps = draw_timesteps(pipe, strength, settings.steps)  # checks the strength
    if len(settings.labels) != len(images):
        raise ValueError(f"one digit per picture: got {len(settings.labels)} digits for {len(images)} pictures")
    generator = torch.Generator(pipe.device).manual_seed(settings.seed)
    images = images.to(pipe.device)
    noise = torch.randn(images.shape, generator=generator, device=pipe.device)
    x = pipe.schedule.q_sample(images, torch.full((len(images),), timesteps[0], device=pipe.device), noise)
    return pipe.denoise(x, settings.labels, settings, timesteps, generator)


def check_mask(masks: torch.Tensor) -> None:
    """SettingError for a mask that leaves nothing to fill in, or nothing to keep."""
    painted = masks.flatten(1).float().mean(1)
    if (painted == 0).any():
        raise SettingError("mask", "painted over the part to fill in (it covers nothing)", "an empty mask")
    if (painted == 1).any():
        raise SettingError("mask", "part of the picture, leaving some of it to keep (it covers everything)",
                           "a mask of the whole picture")


def repair_steps(pipe: Pipeline, images: torch.Tensor, masks: torch.Tensor, settings: Settings) -> Steps:
    """Inpainting: the model fills in the masked part of pictures (N, 1, 28, 28) in [-1, 1] towards
    the settings' digits, masks (N, 1, 28, 28) True where it fills in. It starts from pure noise,
    and at every step it is told the kept pixels (samplers.with_known_pixels), so that it makes a
    whole digit around them and they come out as they were. Yields the pipeline's Steps."""
    if not (len(settings.labels) == len(images) == len(masks)):
        raise ValueError(f"one digit and mask per picture: got {len(settings.labels)} digits and {len(masks)} masks "
                         f"for {len(images)} pictures")
    check_mask(masks)
    generator = torch.Generator(pipe.device).manual_seed(settings.seed)
    x = pipe.starting_noise(len(images), generator)
    keep = ~masks.to(pipe.device)
    return pipe.denoise(x, settings.labels, settings, pipe.timesteps(settings.steps), generator,
                        adjust=lambda eps_fn: with_known_pixels(eps_fn, pipe.schedule, images.to(pipe.device), keep))


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.edit",
                           description="Finish a drawing of a digit (draw), or fill in a masked part of one (repair).")
    p.add_argument("operation", choices=("draw", "repair"))
    p.add_argument("picture", help="a picture of a digit: PNG, JPEG, ..., any size, dark on light or light on dark")
    p.add_argument("--mask", help="repair: a picture of the same size, white (or opaque) where to fill in")
    p.add_argument("--digit", type=int, choices=range(10), metavar="0-9",
                   help="the digit to make (default: the one the classifier reads in the picture)")
    p.add_argument("--strength", type=float, default=DEFAULT_STRENGTH,
                   help=f"draw: how far to noise the picture, above 0 (tidy it) to 1 (a loose hint); default {DEFAULT_STRENGTH}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--out", type=cli.file_ending(".png"), required=True, help="write the result as a PNG")
    p.add_argument("--gif", type=cli.file_ending(".gif"), help="write the denoising as a GIF")
    p.add_argument("--input", type=cli.file_ending(".png"), help="write the 28x28 model input as a PNG")
    args = p.parse_args()
    if (args.operation == "repair") != (args.mask is not None):
        p.error("repair needs --mask, and draw takes none")

    try:
        picture = open_picture(args.picture)
        mask = None if args.mask is None else open_picture(args.mask)
        model_input, mask = to_model_input(picture, mask)
    except (OSError, PictureError) as e:
        p.error(f"{e.strerror if isinstance(e, OSError) else e} ({args.picture}{'' if args.mask is None else ', ' + args.mask})")
    digit = args.digit
    if digit is None:
        try:
            digit = read_digit(load_classifier(CLASSIFIER_PATH), model_input)
        except NotADigitError as e:
            p.error(f"{e} ({args.picture})")
        print(f"the picture reads as a {digit}")
    pipe = Pipeline.load(args.weights, device=args.device)
    with cli.settings_as_flags(p, {"digits": "--digit", "strength": "--strength", "seed": "--seed", "mask": "--mask"}):
        if args.operation == "draw":
            steps = draw_steps(pipe, model_input, draw_settings(pipe, [digit], args.seed), args.strength)
        else:
            steps = repair_steps(pipe, model_input, mask, pipe.settings([digit], args.seed))
        frames = []
        for step, step_frames in denoising_animation(steps):
            frames += step_frames
    save_png(enlarge(to_uint8(step.x)[0], 280), args.out)
    print(f"wrote {args.out}")
    if args.gif:
        save_animation(frames, args.gif)
        print(f"wrote {args.gif}")
    if args.input:
        save_png(enlarge(to_uint8(model_input)[0], 280), args.input)
        print(f"wrote {args.input}")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.edit")
