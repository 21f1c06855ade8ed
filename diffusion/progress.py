"""What a training run shows as it goes, in its run folder, so that a learner can watch a diffusion
model learn:

- loss.csv: step, loss, smoothed loss, learning rate, images/s, a row per step;
- loss.svg: the loss against the step, the sample points marked (redrawn at each);
- progress/step-NNNNNNN.png: the same ten digits (seed 0) at each sample point, labelled;
- progress.gif: those pictures in order, one frame per sample point.

Sample points are spaced geometrically (0, 50, 100, 200, 500, 1000, 2000, 5000, ...), so that the
first steps, where the digits form, are seen as well as the slow end; the last step is one too.

    log = TrainingLog(run_dir, total_steps, step)        # step: where the run starts (0, or resumed)
    log.record(step, loss, learning_rate, images_per_s)  # after each step
    if step in log.points: log.sample(step, ema, schedule)

A resumed run drops the rows and pictures past its checkpoint and goes on from there; as training
resumes exactly, the files come out as if it had not stopped.
"""

import csv
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import media
from .io import atomic_write
from .pipeline import Pipeline, SamplingConfig
from .schedule import NoiseSchedule

COLUMNS = ("step", "loss", "smoothed_loss", "learning_rate", "images_per_s")
SMOOTHING = 0.98  # the smoothed loss: an exponential moving average, bias-corrected as Adam's (Kingma & Ba 2015)
FIRST_POINT = 50  # sample points: 0, then 1, 2 and 5 times the powers of ten from 50: 50, 100, 200, 500, ...
SEED = 0  # the ten digits' starting noise, the same at every sample point
FPS = 2  # the progress GIF: each sample point is a picture to look at
LABEL_HEIGHT = 12  # px above each progress picture, for its step


def sample_points(total_steps: int) -> list[int]:
    """0; 1, 2 and 5 times the powers of ten from FIRST_POINT and below total_steps; total_steps."""
    points, power = [0], 1
    while power < total_steps:
        points += [m * power for m in (1, 2, 5) if FIRST_POINT <= m * power < total_steps]
        power *= 10
    return points + [total_steps]


class TrainingLog:
    """A run's loss history and progress pictures, written into its folder as it trains."""

    def __init__(self, run_dir: str | Path, total_steps: int, start_step: int = 0):
        self.run_dir, self.points = Path(run_dir), sample_points(total_steps)
        self.csv_path, self.frames_dir = self.run_dir / "loss.csv", self.run_dir / "progress"
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.rows = [row for row in read_rows(self.csv_path) if row["step"] <= start_step]
        self.average = 0.0
        for row in self.rows:  # the moving average, as it stood at start_step
            self.average = SMOOTHING * self.average + (1 - SMOOTHING) * row["loss"]
        for stale in self.frames_dir.glob("step-*.png"):
            if frame_step(stale) > start_step:
                stale.unlink()
        with atomic_write(self.csv_path) as tmp:  # the kept rows only: what a resume replays goes again
            write_rows(tmp, self.rows)
        self.file = open(self.csv_path, "a", newline="", buffering=1)  # a line at a time: a kill loses at most one
        self.writer = csv.writer(self.file)

    def record(self, step: int, loss: float, learning_rate: float, images_per_s: float) -> None:
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        smoothed = self.average / (1 - SMOOTHING ** (len(self.rows) + 1))  # no pull towards the 0 it starts from
        row = {"step": step, "loss": loss, "smoothed_loss": smoothed, "learning_rate": learning_rate,
               "images_per_s": images_per_s}
        self.rows.append(row)
        self.writer.writerow([f"{row[column]:.6g}" for column in COLUMNS])

    def sample(self, step: int, model: torch.nn.Module, schedule: NoiseSchedule) -> None:
        """The ten digits that `model` (the EMA weights: it is put in eval mode) makes from seed 0 at
        this step with the default sampler, saved as a labelled picture; then the GIF of every
        picture so far and the loss plot, redrawn."""
        pipe = Pipeline(model, schedule, SamplingConfig())
        digits = media.grid(media.to_uint8(pipe.generate(pipe.settings(list(range(10)), SEED))), columns=10)
        media.save_png(labelled(digits, f"step {step:,}"), self.frames_dir / f"step-{step:07d}.png")
        frames = [np.asarray(Image.open(path)) for path in sorted(self.frames_dir.glob("step-*.png"), key=frame_step)]
        media.save_gif([media.upscale(frame, 2) for frame in frames], self.run_dir / "progress.gif", FPS)
        with atomic_write(self.run_dir / "loss.svg") as tmp:
            tmp.write_text(loss_chart(self.rows, [point for point in self.points if point <= step]))

    def close(self) -> None:
        self.file.close()


def read_rows(path: Path) -> list[dict]:
    """The rows of a loss.csv, as numbers; a line cut short (a kill mid-write) is left out."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as file:
        for values in csv.reader(file):
            try:
                row = dict(zip(COLUMNS, map(float, values), strict=True))
            except ValueError:
                continue  # the header, or a line cut short
            rows.append(row | {"step": int(row["step"])})
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows([f"{row[column]:.6g}" for column in COLUMNS] for row in rows)


def frame_step(path: Path) -> int:
    return int(path.stem.removeprefix("step-"))


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """The picture with a band above it saying `text`, in white on black like the digits."""
    band = Image.new("L", (image.shape[1], LABEL_HEIGHT))
    ImageDraw.Draw(band).text((2, 0), text, fill=255)
    return np.concatenate([np.asarray(band), image])


def loss_chart(rows: list[dict], marked: list[int], width: int = 480, height: int = 240) -> str:
    """The loss (faint) and smoothed loss against the step, on a log scale of loss, with the sample
    points marked on the smoothed line, as SVG."""
    if not rows:
        return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="no steps yet"/>'
    left, right, top, bottom = 44, width - 10, 10, height - 26
    low, high = (math.log10(max(value, 1e-6)) for value in (min(r["loss"] for r in rows), max(r["loss"] for r in rows)))
    low, high = math.floor(low), max(math.ceil(high), math.floor(low) + 1)
    last = max(rows[-1]["step"], 1)

    def x(step: float) -> float:
        return left + (right - left) * step / last

    def y(loss: float) -> float:
        return bottom - (bottom - top) * (math.log10(max(loss, 1e-6)) - low) / (high - low)

    ticks = "".join(f'<text x="{left - 4}" y="{y(10 ** power) + 4:.1f}" text-anchor="end" font-size="10" '
                    f'fill="currentColor">{10 ** power:g}</text>' for power in range(low, high + 1))
    ticks += (f'<text x="{right}" y="{height - 8}" text-anchor="end" font-size="10" fill="currentColor">step '
              f'{rows[-1]["step"]:,}</text><text x="{left}" y="{height - 8}" font-size="10" fill="currentColor">'
              f'0</text><text x="{left + 4}" y="{top + 10}" font-size="10" fill="currentColor">loss (log scale)</text>')
    raw = " ".join(f"{x(r['step']):.1f},{y(r['loss']):.1f}" for r in rows)
    smooth = " ".join(f"{x(r['step']):.1f},{y(r['smoothed_loss']):.1f}" for r in rows)
    by_step = {r["step"]: r["smoothed_loss"] for r in rows}
    dots = "".join(f'<circle cx="{x(step):.1f}" cy="{y(by_step[step]):.1f}" r="3" fill="{media.HIGHLIGHT}"/>'
                   for step in marked if step in by_step)
    final = rows[-1]["smoothed_loss"]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="the '
            f'training loss over {rows[-1]["step"]:,} steps, smoothed {rows[0]["smoothed_loss"]:.3g} at the first '
            f'step to {final:.3g} at the last">{ticks}<polyline points="{raw}" fill="none" stroke="currentColor" '
            f'stroke-opacity="0.25"/><polyline points="{smooth}" fill="none" stroke="{media.HIGHLIGHT}" '
            f'stroke-width="2"/>{dots}</svg>')
