"""What a training run shows as it goes, in its run folder, so that a learner can watch a diffusion
model learn:

- loss.csv: step, loss, smoothed loss, learning rate, images/s, a row per step;
- loss.svg: the loss against the step, the sample points marked (redrawn at each);
- progress/step-NNNNNNN.png: the same ten digits (seed 0) at each sample point, labelled;
- progress.gif: those pictures in order, one frame per sample point.

Sample points are spaced geometrically (0, 50, 100, 200, 500, 1000, 2000, 5000, ...), so that the
first steps, where the digits form, are seen as well as the slow end; the last step is one too.
With `train.py --snapshots` the run also keeps its EMA weights at each sample point, in float16:
snapshots/step-NNNNNNN.safetensors, each a weights file of its own. The repository ships some of
a recorded run's, with its loss.csv, in weights/learning/ (docs/training.md):

    steps = snapshot_steps()                             # [100, 500, 2000, 5000]: the shipped ones
    pipe = load_snapshot(1000)                           # a Pipeline, as Pipeline.load gives
    history = read_rows(RECORDED_RUN / "loss.csv")

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
from .io import WEIGHTS_DIR, WeightsError, atomic_write, load_safetensors
from .pipeline import Pipeline, SamplingConfig
from .schedule import NoiseSchedule

COLUMNS = ("step", "loss", "smoothed_loss", "learning_rate", "images_per_s")
SMOOTHING = 0.98  # the smoothed loss: an exponential moving average, bias-corrected as Adam's (Kingma & Ba 2015)
FIRST_POINT = 50  # sample points: 0, then 1, 2 and 5 times the powers of ten from 50: 50, 100, 200, 500, ...
SEED = 0  # the ten digits' starting noise, the same at every sample point
FPS = 2  # the progress GIF: each sample point is a picture to look at
LABEL_HEIGHT = 12  # px above each progress picture, for its step
MAX_CHART_POINTS = 600  # a longer history is drawn through every n-th row
RECORDED_RUN = WEIGHTS_DIR / "learning"  # the shipped snapshots of a recorded run, and its loss.csv


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
            if step_of(stale) > start_step:
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
        digits = media.grid(media.to_uint8(ten_digits(Pipeline(model, schedule, SamplingConfig()))), columns=10)
        media.save_png(labelled(digits, f"step {step:,}"), self.frames_dir / f"step-{step:07d}.png")
        frames = [np.asarray(Image.open(path)) for path in sorted(self.frames_dir.glob("step-*.png"), key=step_of)]
        media.save_gif([media.upscale(frame, 2) for frame in frames], self.run_dir / "progress.gif", FPS)
        with atomic_write(self.run_dir / "loss.svg") as tmp:
            tmp.write_text(loss_chart(self.rows, [point for point in self.points if point <= step]))

    def close(self) -> None:
        self.file.close()


def ten_digits(pipe: Pipeline) -> torch.Tensor:
    """0 to 9 from seed 0, with the pipeline's recommended settings, (10, 1, 28, 28): what the
    progress pictures show, and the "How it learned" tab for each snapshot."""
    return pipe.generate(pipe.settings(list(range(10)), SEED))


def snapshot_path(step: int, folder: str | Path = RECORDED_RUN) -> Path:
    return Path(folder) / f"step-{step:07d}.safetensors"


def snapshot_steps(folder: str | Path = RECORDED_RUN) -> list[int]:
    """The steps of the snapshots in a folder (a run's snapshots/, or the recorded run's), in order."""
    return sorted(step_of(path) for path in Path(folder).glob("step-*.safetensors"))


def load_snapshot(step: int, folder: str | Path = RECORDED_RUN, device=None) -> Pipeline:
    """The snapshot at `step` as a Pipeline (float32 again). Raises WeightsError in one line: for a
    step with no snapshot, the steps there are; for a damaged file, how to get it back."""
    path = snapshot_path(step, folder)
    if not path.is_file():
        there = ", ".join(map(str, snapshot_steps(folder))) or "none"
        raise WeightsError(f"no snapshot at step {step} in {folder} (the steps there: {there})")
    try:
        return Pipeline.load(path, device)
    except WeightsError as e:
        raise WeightsError(f"{e}; `git checkout -- {path}` restores a shipped one, or see docs/training.md "
                           "(The recorded run) to make it again") from None


def snapshot_training(step: int, folder: str | Path = RECORDED_RUN) -> dict:
    """What a snapshot's metadata says of its training (step, loss, command, hardware, wall_time_s);
    raises WeightsError if it cannot be read."""
    return load_safetensors(snapshot_path(step, folder), ("training",))[1]["training"]


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


def step_of(path: Path) -> int:
    return int(path.stem.removeprefix("step-"))


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """The picture with a band above it saying `text`, in white on black like the digits."""
    band = Image.new("L", (image.shape[1], LABEL_HEIGHT))
    ImageDraw.Draw(band).text((2, 0), text, fill=255)
    return np.concatenate([np.asarray(band), image])


def loss_chart(rows: list[dict], marked: list[int], width: int = 480, height: int = 240) -> str:
    """The loss (faint) and smoothed loss against the step, on a log scale of loss, with the steps
    `marked` (the sample points, or a snapshot) as dots on the smoothed line, as SVG."""
    if not rows:
        return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="no steps yet"/>'
    left, right, top, bottom = 48, width - 10, 12, height - 28
    low, high = (math.log10(max(value, 1e-6)) for value in (min(r["loss"] for r in rows), max(r["loss"] for r in rows)))
    low, high = math.floor(low), max(math.ceil(high), math.floor(low) + 1)
    last = max(rows[-1]["step"], 1)

    def x(step: float) -> float:
        return left + (right - left) * step / last

    def y(loss: float) -> float:
        return bottom - (bottom - top) * (math.log10(max(loss, 1e-6)) - low) / (high - low)

    ticks = "".join(f'<text x="{left - 4}" y="{y(10 ** power) + 4:.1f}" text-anchor="end" font-size="13" '
                    f'fill="currentColor">{10 ** power:g}</text>' for power in range(low, high + 1))
    ticks += (f'<text x="{right}" y="{height - 8}" text-anchor="end" font-size="13" fill="currentColor">step '
              f'{rows[-1]["step"]:,}</text><text x="{left}" y="{height - 8}" font-size="13" fill="currentColor">'
              f'0</text><text x="{left + 4}" y="{top + 10}" font-size="13" fill="currentColor">loss (log scale)</text>')
    shown = rows[::math.ceil(len(rows) / MAX_CHART_POINTS)] + rows[-1:]  # a point per pixel or so is enough
    raw = " ".join(f"{x(r['step']):.1f},{y(r['loss']):.1f}" for r in shown)
    smooth = " ".join(f"{x(r['step']):.1f},{y(r['smoothed_loss']):.1f}" for r in shown)
    marks = [(step, smoothed_at(rows, step)) for step in marked]
    dots = "".join(f'<circle cx="{x(step):.1f}" cy="{y(loss):.1f}" r="4" fill="{media.HIGHLIGHT}" '
                   f'stroke="currentColor"/>' for step, loss in marks)
    said = "; marked: " + ", ".join(f"step {step:,} (smoothed {loss:.3g})" for step, loss in marks) if marks else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="the '
            f'training loss over {rows[-1]["step"]:,} steps, smoothed {rows[0]["smoothed_loss"]:.3g} at the first '
            f'step to {rows[-1]["smoothed_loss"]:.3g} at the last{said}">{ticks}<polyline points="{raw}" fill="none" '
            f'stroke="currentColor" stroke-opacity="0.25"/><polyline points="{smooth}" fill="none" '
            f'stroke="{media.HIGHLIGHT}" stroke-width="2"/>{dots}</svg>')


def smoothed_at(rows: list[dict], step: int) -> float:
    """The smoothed loss as it stood at `step`: that of the last row up to it (the first row's for step 0)."""
    return next((r["smoothed_loss"] for r in reversed(rows) if r["step"] <= step), rows[0]["smoothed_loss"])
