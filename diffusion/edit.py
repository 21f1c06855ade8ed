"""Editing with the denoiser: bring any picture of a digit into the model's world, MNIST's way.

Work in progress for issue 15 (draw and repair): the preprocessing and SDEdit so far; inpainting next.

MNIST's digits were made from scans: each digit's strokes scaled, keeping their proportions, to
fit a 20x20 box, then placed in the 28x28 image so that their centre of mass is at its centre
(LeCun et al., "The MNIST database"). to_model_input does the same with any picture: a drawing
(dark strokes on a light canvas, or strokes on a transparent one), a photo of a digit on paper,
or an MNIST-like image (light strokes on black).
"""

import math
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .pipeline import Pipeline, SettingError, is_number
from .samplers import Step

DIGIT_BOX = 20  # px: the longer side of a digit's strokes in MNIST
IMAGE_SIZE = 28
MIN_INK = 0.1  # of the strongest stroke: fainter pixels are paper, not ink, when finding the strokes' box


class EmptyImageError(ValueError):
    """A picture with no strokes in it: empty, or one flat colour."""


def ink(image: Image.Image) -> np.ndarray:
    """How much ink each pixel holds, 0 to 1 (H, W). On a transparent canvas the strokes are what
    is opaque; on an opaque picture, ink is what differs from the background, taken to be the
    shade of most of its border (light paper, or black as in MNIST)."""
    rgba = np.asarray(image.convert("RGBA"), np.float32) / 255
    alpha = rgba[..., 3]
    if alpha.min() < 0.5:
        return alpha
    grey = np.asarray(image.convert("L"), np.float32) / 255
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 1 - grey if np.median(border) > 0.5 else grey


def to_model_input(image: Image.Image) -> torch.Tensor:
    """A picture of a digit as the model's input (1, 1, 28, 28) in [-1, 1], made as MNIST's digits
    were: the strokes' bounding box scaled to fit 20x20, then centred by centre of mass in 28x28,
    the strongest stroke at full brightness. Raises EmptyImageError for a picture without strokes."""
    amount = ink(image)
    strongest = amount.max()
    if strongest - amount.min() < MIN_INK:
        raise EmptyImageError("the picture is empty or one flat colour: draw or upload a digit")
    rows, columns = np.nonzero(amount >= MIN_INK * strongest)
    strokes = amount[rows.min():rows.max() + 1, columns.min():columns.max() + 1] / strongest
    height, width = strokes.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = np.asarray(Image.fromarray(strokes).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    # Centre of mass of the scaled strokes, then the offset that puts it at the image's centre.
    ys, xs = np.indices(box.shape)
    total = box.sum()
    centre_y, centre_x = (ys * box).sum() / total, (xs * box).sum() / total
    top = int(np.clip(round(IMAGE_SIZE / 2 - 0.5 - centre_y), 0, IMAGE_SIZE - box.shape[0]))
    left = int(np.clip(round(IMAGE_SIZE / 2 - 0.5 - centre_x), 0, IMAGE_SIZE - box.shape[1]))
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    canvas[top:top + box.shape[0], left:left + box.shape[1]] = box
    canvas /= canvas.max()
    return torch.from_numpy(canvas * 2 - 1)[None, None]


@torch.inference_mode()
def sdedit_steps(pipe: Pipeline, images: torch.Tensor, digits: list[int], strength: float, seed: int = 0,
                 guidance_scale: float | None = None, sampler: str | None = None,
                 steps: int | None = None) -> Iterator[Step]:
    """SDEdit (Meng et al. 2022, Alg. 1): noise pictures (N, 1, 28, 28) in [-1, 1] part of the way,
    to t0 = strength (T - 1), with q(x_t0 | x_0), then denoise them towards digits (one per
    picture) from t0: a run of strength x the sampler's steps (at least one). Strength near 0
    tidies the strokes; near 1 the picture is only a loose hint. Yields the pipeline's Steps."""
    guidance_scale, sampler, steps = pipe.settings(guidance_scale, sampler, steps)
    pipe.validate(digits, guidance_scale, seed, sampler, steps)
    if not (is_number(strength) and math.isfinite(strength) and 0 < strength <= 1):
        raise SettingError("strength", "a number above 0 and at most 1", strength)
    if len(digits) != len(images):
        raise ValueError(f"one digit per picture: got {len(digits)} digits for {len(images)} pictures")
    start = round(strength * (pipe.schedule.num_timesteps - 1))
    generator = torch.Generator(pipe.device).manual_seed(seed)
    images = images.to(pipe.device)
    noise = torch.randn(images.shape, generator=generator, device=pipe.device)
    x = pipe.schedule.q_sample(images, torch.full((len(images),), start, device=pipe.device), noise)
    timesteps = pipe.schedule.timesteps(min(start + 1, max(1, round(strength * steps))), start=start)
    yield from pipe.denoise(x, torch.tensor(digits), guidance_scale, sampler, timesteps, generator)
