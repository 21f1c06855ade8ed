"""From tensors to pictures: uint8 images, grids, crisp upscaling, PNGs, animated GIFs, and the
charts of what the classifier reads (SVG).

The denoising animation, the same in the app and the CLI:

    steps = pipe.sample_steps(pipe.settings([3]))
    frames = [frame for step, new_frames in denoising_animation(steps) for frame in new_frames]
    save_animation(frames, "three.gif")      # x_t above x0, paced so that a person can follow it
"""

import base64
import io
import math
import os
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .classifier import first_passing
from .io import atomic_write
from .samplers import Step, Steps, ddim_path

# How the animation plays: short runs get in-between frames up to MIN_FRAMES, long runs are
# shown at MAX_FRAMES evenly spaced steps; at FPS that is 3 to 6 seconds of motion, then the
# final image is held.
MIN_FRAMES = 48
MAX_FRAMES = 100
FPS = 16
HOLD_FINAL_S = 1.5
ANIMATION_SIZE = 480  # about, the longer side of the animation on the page, in whole-number upscales
# ... and of the downloadable GIF: writing it at 480 px took a quarter of each request's work, which
# every request does, wanted or not (docs/serving.md).
GIF_SIZE = 320
# The GIF's pixels over all its frames: long runs of big grids show fewer steps (never fewer than
# MIN_FRAMES frames), and batches of more than MAX_ANIMATED_PER_DIGIT samples per digit animate
# only the first that many of each.
MAX_ANIMATION_PIXELS = 16_000_000
MAX_ANIMATED_PER_DIGIT = 8


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


def crisp_scale(shape: tuple[int, ...], target: int = 480) -> int:
    """The whole-number upscale factor that brings an image's longer side near target, at least 2."""
    return max(2, target // max(shape[:2]))


def enlarge(image: np.ndarray, target: int = 480) -> np.ndarray:
    """Upscale crisply (nearest neighbour) by the whole factor crisp_scale picks for target."""
    return upscale(image, crisp_scale(image.shape, target))


def denoising_frames(samples: list[torch.Tensor], x0: torch.Tensor, num_digits: int) -> list[np.ndarray]:
    """Frames of the denoising animation at 1 px per pixel, one per noisy sample x_t: x_t above
    the model's estimate of the clean image x0 (one step's, shared by its frames), a grey bar between."""
    if not samples:
        return []
    clean = sample_grid(to_uint8(x0), num_digits)
    bar = np.full((4, clean.shape[1]), 128, np.uint8)
    noisy = to_uint8(torch.cat(samples)).reshape(len(samples), len(x0), *x0.shape[2:])  # one conversion for all
    return [np.concatenate([sample_grid(images, num_digits), bar, clean], axis=0) for images in noisy]


def animation_samples(steps: Steps, min_frames: int = MIN_FRAMES,
                      max_frames: int = MAX_FRAMES) -> Iterator[tuple[Step, list[torch.Tensor]]]:
    """The samples an animation of the denoising shows: for each of the sampler's steps, as it
    comes (so a caller can stream), (step, the samples of its frames, often none).

    The first frame is the starting noise x_T, the last the final image. A run of fewer than
    min_frames steps gets frames in between its steps: samples on the DDIM path through each
    step's own prediction (samplers.ddim_path), evenly spaced in signal amplitude
    sqrt(alpha_bar), so they cost no model evaluations. A longer run is shown at up to
    max_frames evenly spaced steps.
    """
    num_steps = len(steps)
    per_step = math.ceil(min_frames / num_steps) if num_steps < min_frames else 1
    shown = set(np.linspace(0, num_steps - 1, min(num_steps, max_frames)).round().astype(int).tolist())
    for step in steps:
        samples = [step.x_t] if step.index == 0 else []
        if step.index in shown:
            start, end = math.sqrt(step.alpha_bar), math.sqrt(step.alpha_bar_next)
            samples += [ddim_path(step, (start + (end - start) * k / per_step) ** 2) for k in range(1, per_step)]
            samples.append(step.x)
        yield step, samples


def frame_budget(frame_shape: tuple[int, int]) -> int:
    """The most frames an animation of frames of this shape may have: MAX_FRAMES, fewer where the
    upscaled GIF would pass MAX_ANIMATION_PIXELS, but at least MIN_FRAMES, so that it is never rushed."""
    height, width = frame_shape
    scale = crisp_scale(frame_shape, GIF_SIZE)
    return max(MIN_FRAMES, min(MAX_FRAMES, MAX_ANIMATION_PIXELS // (height * width * scale**2)))


def denoising_animation(steps: Steps, num_digits: int = 1,
                        samples_per_digit: int = 1) -> Iterator[tuple[Step, list[np.ndarray]]]:
    """The denoising animation's frames (x_t above x0, 1 px per pixel), step by step as the
    sampler's steps come: (step, the frames it adds, often none). animation_samples picks the
    frames, within frame_budget; of big batches it shows the first MAX_ANIMATED_PER_DIGIT
    samples of each digit."""
    per_digit_shown = min(samples_per_digit, MAX_ANIMATED_PER_DIGIT)
    shown = [d * samples_per_digit + k for d in range(num_digits) for k in range(per_digit_shown)]
    blank = torch.zeros(len(shown), 1, 28, 28)
    max_frames = frame_budget(denoising_frames([blank], blank, num_digits)[0].shape)
    for step, samples in animation_samples(steps, MIN_FRAMES, max_frames):
        yield step, denoising_frames([x[shown] for x in samples], step.x0[shown], num_digits)


def spaced(row: np.ndarray, gaps: list[int], width: int, cell: int = 28, padding: int = 2) -> np.ndarray:
    """A row of cells as grid lays them out, with `width` black columns before each cell whose
    index is in gaps: the spaces between the groups of a written number."""
    columns = np.array([padding + k * (cell + padding) for k in gaps], dtype=np.int64)
    return np.insert(row, np.repeat(columns, width), 0, axis=1)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: each pixel becomes a factor x factor block, so edges stay crisp."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def data_url(data: bytes, mime_type: str) -> str:
    """Bytes as a data: URL, which a web page shows without fetching anything more."""
    return f"data:{mime_type};base64," + base64.b64encode(data).decode("ascii")


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return data_url(buffer.getvalue(), "image/png")


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def gif_bytes(frames: list[np.ndarray], fps: float = FPS, hold_final_s: float = HOLD_FINAL_S) -> bytes:
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
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   optimize=False)
    return buffer.getvalue()


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float = FPS,
             hold_final_s: float = HOLD_FINAL_S) -> None:
    data = gif_bytes(frames, fps, hold_final_s)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def save_animation(frames: list[np.ndarray], path: str | os.PathLike, fps: float = FPS) -> None:
    """An animation (the denoising's, a morph's) as a GIF, upscaled crisply to about GIF_SIZE."""
    scale = crisp_scale(frames[0].shape, GIF_SIZE)
    save_gif([upscale(frame, scale) for frame in frames], path, fps)


def back_and_forth(frames: list[np.ndarray], hold: int = 4) -> list[np.ndarray]:
    """Frames for a loop that walks there and back, resting `hold` frames at each end."""
    return [frames[0]] * hold + frames[1:-1] + [frames[-1]] * hold + frames[-2:0:-1]


# The charts of class probabilities, as SVG: text that any page shows crisply at any width.
# Lines and labels take the page's text colour (currentColor); the requested digit stands out.
CHART_WIDTH, CHART_HEIGHT = 300, 150
HIGHLIGHT = "#c2410c"  # the requested digit: the app's primary colour, 5.2:1 on white (text needs 4.5:1)
HIGHLIGHT_RGB = (194, 65, 12)


def probability_bars(probabilities: Sequence[float], digit: int) -> str:
    """Ten bars, one per class, as SVG: what the classifier reads one image as; `digit`'s bar stands out."""
    width, height, bottom, tallest = CHART_WIDTH, 110, 92, 72  # bars stand on y = bottom, labels below and above
    slot = width / len(probabilities)
    bars = []
    for k, p in enumerate(probabilities):
        bar_height = max(1.0, tallest * float(p))  # a hairline where it is 0, so that every class shows
        colour = HIGHLIGHT if k == digit else "currentColor"
        opacity, weight = (1, "bold") if k == digit else (0.45, "normal")
        bars.append(f'<rect data-digit="{k}" x="{k * slot + 5:.1f}" y="{bottom - bar_height:.1f}" width="{slot - 10:.1f}" '
                    f'height="{bar_height:.1f}" fill="{colour}" fill-opacity="{opacity}"><title>{k}: {float(p):.0%}</title></rect>'
                    f'<text x="{(k + 0.5) * slot:.1f}" y="{height - 4}" text-anchor="middle" font-size="12" '
                    f'fill="currentColor" font-weight="{weight}">{k}</text>')
    p = float(probabilities[digit])
    label = (f'<text x="{(digit + 0.5) * slot:.1f}" y="{bottom - max(1.0, tallest * p) - 5:.1f}" text-anchor="middle" '
             f'font-size="11" fill="{HIGHLIGHT}">{p:.0%}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="the classifier\'s probabilities: {", ".join(f"{k}: {float(q):.0%}" for k, q in enumerate(probabilities))}">'
            f'{"".join(bars)}{label}</svg>')


def probability_chart(readings: Sequence[Sequence[float]], step_numbers: Sequence[int], num_steps: int,
                      digit: int, passed: int | None) -> str:
    """Each class's probability against the step, as SVG: one line per class, one point per reading
    (readings (S, 10) at step_numbers, 1-based, of num_steps), `digit`'s line standing out and the
    reading where it passed 50% (index `passed`, as classifier.first_passing finds it) marked."""
    width, height = CHART_WIDTH, CHART_HEIGHT
    left, right, top, bottom = 34, width - 10, 10, height - 26

    def x(step: int) -> float:
        return (left + right) / 2 if num_steps == 1 else left + (right - left) * (step - 1) / (num_steps - 1)

    def y(p: float) -> float:
        return bottom - (bottom - top) * float(p)

    axes = "".join(f'<line x1="{left}" x2="{right}" y1="{y(level)}" y2="{y(level)}" stroke="currentColor" '
                   f'stroke-opacity="{0.5 if level == 0.5 else 0.25}" stroke-dasharray="{"4 3" if level == 0.5 else "none"}"/>'
                   f'<text x="{left - 4}" y="{y(level) + 4}" text-anchor="end" font-size="10" fill="currentColor">'
                   f"{level:.0%}</text>" for level in (0, 0.5, 1))
    axes += "".join(f'<text x="{x(step)}" y="{height - 10}" text-anchor="middle" font-size="10" fill="currentColor">'
                    f"{label}</text>" for step, label in ((1, "step 1"), (num_steps, f"{num_steps}")) if num_steps > 1)
    lines = []
    for k in sorted(range(len(readings[0])), key=lambda k: k == digit):  # the requested digit's line on top
        points = " ".join(f"{x(step):.1f},{y(reading[k]):.1f}" for step, reading in zip(step_numbers, readings))
        style = (f'stroke="{HIGHLIGHT}" stroke-width="2.5"' if k == digit else
                 'stroke="currentColor" stroke-opacity="0.35" stroke-width="1"')
        lines.append(f'<polyline data-digit="{k}" points="{points}" fill="none" {style}/>')
    marker = ""
    if passed is not None:
        step, p = step_numbers[passed], readings[passed][digit]
        marker = (f'<circle class="passes" cx="{x(step):.1f}" cy="{y(p):.1f}" r="4.5" fill="{HIGHLIGHT}"/>'
                  f'<text x="{min(x(step) + 7, right - 70):.1f}" y="{max(y(p) + 14, top + 12):.1f}" font-size="10" '
                  f'fill="{HIGHLIGHT}">passes 50%</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{chart_description(readings, step_numbers, digit)}">{axes}{"".join(lines)}{marker}</svg>')


def chart_description(readings: Sequence[Sequence[float]], step_numbers: Sequence[int], digit: int) -> str:
    """probability_chart in words, for those who cannot see it: digit's probability at each step read."""
    at_steps = ", ".join(f"step {step}: {reading[digit]:.0%}" for step, reading in zip(step_numbers, readings))
    return f"the probability that it is a {digit}, at each step read: {at_steps}"


def reading_caption(probabilities: torch.Tensor, step_numbers: list[int], digit: int, passed: int | None,
                    step: int, steps: int, finished: bool) -> str:
    """What a panel of reading_panels says under its chart: how sure, and when the digit passed 50%."""
    when = "not yet over 50%" if passed is None else f"passed 50% at step {step_numbers[passed]}"
    if not finished:
        return f"{digit}: {probabilities[-1, digit]:.0%}, {when}"
    if passed is None:
        when = f"not over 50% when stopped at step {step}" if step < steps else "never passed 50%"
    return f"{digit}: {when} (of {steps} steps)"


def reading_panels(step_numbers: list[int], probabilities: torch.Tensor, digits: list[int], step: int, steps: int,
                   finished: bool, first_samples: bool = False) -> dict:
    """What the classifier reads each digit's guess x0 as (probabilities (readings, digits, 10) at
    step_numbers), as a heading and a panel per digit: while running (step of steps), its latest
    probabilities as bars; once finished (or stopped), a chart of each class's probability
    against the step, with the numbers themselves. The first step its digit passes 50% is marked.
    first_samples: the digits' first samples of several."""
    passed = first_passing(probabilities, torch.tensor(digits))
    panels = []
    for i, digit in enumerate(digits):
        if finished:  # a stopped run's chart spans the steps made
            svg = probability_chart(probabilities[:, i].tolist(), step_numbers, step, digit, passed[i])
        else:
            svg = probability_bars(probabilities[-1, i].tolist(), digit)
        caption = reading_caption(probabilities[:, i], step_numbers, digit, passed[i], step, steps, finished)
        panels.append({"svg": svg, "caption": caption})
    of_which = " (the first sample of each digit)" if first_samples else ""
    heading = ("What does the model think it is? The classifier's reading of x&#x302;<sub>0</sub>"
               f"{' at each step' if finished else f', step {step_numbers[-1]} of {steps}'}{of_which}")
    value = {"heading": heading, "panels": panels}
    if finished:
        value |= {"digits": digits, "steps": step_numbers, "probabilities": probabilities.tolist()}
    return value


def final_readings(probabilities: torch.Tensor, stand_out: list[int]) -> dict:
    """What the classifier reads finished images as (probabilities (images, 10)), as a heading and
    a panel of bars per image, the bar of its digit in stand_out standing out."""
    panels = [{"svg": probability_bars(p.tolist(), digit), "caption": f"{int(p.argmax())}: {p.max():.0%}"}
              for p, digit in zip(probabilities, stand_out)]
    return {"heading": "What the classifier reads it as", "panels": panels, "probabilities": probabilities.tolist()}


def mask_overlay(model_input: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The model input (1, 1, 28, 28) as RGB, the part to fill in (mask) tinted with HIGHLIGHT."""
    grey = np.repeat(to_uint8(model_input)[0][..., None], 3, axis=2).astype(np.float32)
    tinted = 0.4 * grey + 0.6 * np.array(HIGHLIGHT_RGB, np.float32)
    return np.where(mask[0, 0].numpy()[..., None], tinted, grey).astype(np.uint8)
