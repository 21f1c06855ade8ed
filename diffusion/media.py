"""From tensors to pictures: uint8 images, grids, crisp upscaling, PNGs and animated GIFs."""

import math
import os

import imageio.v3 as iio
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


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: each pixel becomes a factor x factor block, so edges stay crisp."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 20, hold_final_s: float = 1.0) -> None:
    """An animated GIF that loops forever and holds its final frame for hold_final_s seconds."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    # Written as RGB: grayscale GIFs from Pillow 13 do not read back with imageio ("No packer found from P to L").
    rgb = np.stack([frame if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, axis=2) for frame in frames])
    frame_ms = 1000 / fps
    durations = [frame_ms] * (len(frames) - 1) + [max(frame_ms, 1000 * hold_final_s)]
    with atomic_write(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".gif", duration=durations, loop=0)
