"""From tensors to pictures: uint8 images, grids, crisp upscaling, PNGs and animated GIFs."""

import base64
import io
import math
import os

import numpy as np
import torch
from PIL import Image

from .io import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (N, 1, H, W) in [-1, 1] -> uint8 array (N, H, W) in [0, 255]."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).squeeze(1).cpu().numpy()


def grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W) into one (rows, columns) image with black padding between."""
    n, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding), np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        out[top:top + height, left:left + width] = image
    return out


def sample_grid(images: np.ndarray, num_digits: int) -> np.ndarray:
    """Tile images ordered as Pipeline.labels orders them (each digit's samples together):
    a column per digit and a row per sample, or a single row when there is one digit."""
    n, height, width = images.shape
    if num_digits == 1:
        return grid(images, columns=n)
    per_digit = n // num_digits
    by_sample = images.reshape(num_digits, per_digit, height, width).swapaxes(0, 1).reshape(n, height, width)
    return grid(by_sample, columns=num_digits)


def crisp_scale(width: int, target_width: int = 320) -> int:
    """The whole-number upscale factor that brings an image near target_width, at least 2."""
    return max(2, target_width // width)


def enlarge(image: np.ndarray, target_width: int = 320) -> np.ndarray:
    """Upscale crisply (nearest neighbour) by the whole factor crisp_scale picks for target_width."""
    return upscale(image, crisp_scale(image.shape[1], target_width))


def denoising_frame(x: torch.Tensor, x0: torch.Tensor, num_digits: int) -> np.ndarray:
    """One frame of the denoising film, at 1 px per pixel: the noisy sample x_t beside the
    model's current estimate of the clean image x0, a grey bar between."""
    noisy, clean = sample_grid(to_uint8(x), num_digits), sample_grid(to_uint8(x0), num_digits)
    bar = np.full((noisy.shape[0], 4), 128, np.uint8)
    return np.concatenate([noisy, bar, clean], axis=1)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: each pixel becomes a factor x factor block, so edges stay crisp."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def png_data_url(image: np.ndarray) -> str:
    """A PNG as a data: URL, which a web page shows without fetching anything more."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 20, hold_final_s: float = 1.0) -> None:
    """An animated GIF of uint8 grayscale frames that loops forever and holds its final frame
    for hold_final_s seconds."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    # Palette images whose palette is the 256 greys, unoptimised: each pixel's index is its grey
    # level, so nothing is quantised (quantising took most of the time) and the GIF is exact.
    grey_palette = [level for level in range(256) for _ in range(3)]
    images = []
    for frame in frames:
        image = Image.fromarray(frame)  # uint8 (H, W): mode "L"
        image.putpalette(grey_palette)  # makes it a palette ("P") image with these colours
        images.append(image)
    frame_ms = 1000 / fps
    durations = [round(frame_ms)] * (len(frames) - 1) + [round(max(frame_ms, 1000 * hold_final_s))]
    with atomic_write(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       optimize=False)
