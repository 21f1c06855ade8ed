"""Walk the space between digits: nearby starting noise gives nearby digits.

    python -m diffusion.morph --start 3:1 --end 3:2 --gif three.gif --row three.png   # a 3, from seed 1 to seed 2
    python -m diffusion.morph --start 3:0 --end 8:0 --gif three-to-eight.gif          # seed 0, from a 3 to an 8

A morph is a row of frames at points from 0 (its start, a digit and a seed) to 1 (its end):
- between two seeds, the starting noise x_T is interpolated spherically (slerp) from the first
  seed's to the second's, so that every frame starts from noise of the size a Gaussian draw
  has, as in training; a straight line would shrink it by up to 1/sqrt(2) midway;
- between two digits, the conditioning is mixed, (1 - point) of the first digit and point of
  the second, with guidance towards the mix (samplers.classifier_free_guidance with weights).
Both at once is a walk too.

morph_steps yields the pipeline's Steps, all frames as one batch, so streaming and GIFs work as
for sample_steps. It uses a deterministic sampler (DDIM or DPM-Solver++), so that neighbouring
frames differ only by where they lie on the walk; the frame at point 0 (or 1) is exactly the
image the pipeline makes for the start's (or end's) digit and seed alone.
"""

import math

import numpy as np
import torch

from . import cli
from .classifier import DEFAULT_PATH as CLASSIFIER_PATH
from .classifier import class_probabilities, load_classifier
from .media import back_and_forth, grid, save_animation, save_png, to_uint8, upscale
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .samplers import Steps, final_image
from .settings import SettingError, Settings, is_integer, is_number

DETERMINISTIC_SAMPLERS = ("dpmpp", "ddim")
MIN_FRAMES, MAX_FRAMES = 3, 16  # a row: from its two ends and the middle, to a smooth walk
FPS = 8  # the looping GIF's pace, slower than the denoising's: each frame is a whole digit to look at


def slerp(a: torch.Tensor, b: torch.Tensor, point: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) between a and b, each taken as one vector:
    sin((1 - p) theta) / sin(theta) a + sin(p theta) / sin(theta) b, with theta the angle between
    them. Exactly a at 0 and b at 1; two Gaussian draws of many values are nearly orthogonal
    and of nearly equal norm, and every point between keeps that norm."""
    a64, b64 = a.flatten().double(), b.flatten().double()
    cos_theta = float(a64 @ b64 / (a64.norm() * b64.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos_theta)))
    if theta < 1e-4:  # (nearly) the same direction: the arc is the straight line
        return (1 - point) * a + point * b
    return math.sin((1 - point) * theta) / math.sin(theta) * a + math.sin(point * theta) / math.sin(theta) * b


def frame_points(frames: int) -> list[float]:
    """The points of a row of `frames` evenly spaced frames, 0 and 1 included."""
    if not (is_integer(frames) and MIN_FRAMES <= frames <= MAX_FRAMES):
        raise SettingError("frames", f"an integer from {MIN_FRAMES} to {MAX_FRAMES}", frames)
    return np.linspace(0, 1, frames).tolist()


def morph_noise(pipe: Pipeline, seeds: tuple[int, int], points: list[float]) -> torch.Tensor:
    """The starting noise of each point: slerp between the two seeds' x_T (N, C, H, W)."""
    start, end = (pipe.starting_noise(1, torch.Generator(pipe.device).manual_seed(seed)) for seed in seeds)
    return torch.cat([slerp(start, end, point) for point in points])


def morph_ends(pipe: Pipeline, start: tuple[int, int], end: tuple[int, int], **options) -> tuple[Settings, Settings]:
    """A morph's two ends, (digit, seed) each, as the Settings that make each alone (Pipeline.settings,
    the same options for both; unset, the weights' recommended ones)."""
    ends = []
    for digit, seed in (start, end):
        try:
            ends.append(pipe.settings([digit], seed, **options))
        except SettingError as e:  # said of the one digit an end has
            if e.name != "digits":
                raise
            raise SettingError("digit", f"an integer from 0 to {pipe.model.config.num_classes - 1}", digit) from None
    return tuple(ends)


def check(start: Settings, end: Settings, points: list[float]) -> None:
    """SettingError, saying what is allowed, for a morph that cannot be made between these ends."""
    if (start.digits, start.seed) == (end.digits, end.seed):
        raise SettingError("end", "a different digit or seed from the start", (end.digits[0], end.seed))
    if (start.sampler, start.steps, start.guidance_scale) != (end.sampler, end.steps, end.guidance_scale):
        raise SettingError("end", "made with the start's sampler, steps and guidance", end)
    if start.sampler not in DETERMINISTIC_SAMPLERS:
        raise SettingError("sampler", f"a deterministic one ({', '.join(DETERMINISTIC_SAMPLERS)})", start.sampler)
    if not (isinstance(points, (list, tuple)) and points and
            all(is_number(p) and math.isfinite(p) and 0 <= p <= 1 for p in points)):
        raise SettingError("points", "a non-empty list of numbers from 0 to 1", points)


def morph_steps(pipe: Pipeline, start: Settings, end: Settings, points: list[float]) -> Steps:
    """The denoising of a morph's frames, one image per point, from the image that start's settings
    make at 0 to end's at 1 (one digit each, made the same way: morph_ends); the last Step's x
    holds the frames."""
    check(start, end, points)
    (start_digit,), (end_digit,) = start.digits, end.digits
    x = morph_noise(pipe, (start.seed, end.seed), points)
    if start_digit == end_digit:
        labels, weights = torch.full((len(points),), start_digit), None
    else:
        labels = torch.tensor([[start_digit, end_digit]]).repeat(len(points), 1)
        weights = torch.tensor([[1 - point, point] for point in points])
    return pipe.denoise(x, labels, start, pipe.timesteps(start.steps), weights=weights)


def morph(pipe: Pipeline, start: Settings, end: Settings, points: list[float]) -> torch.Tensor:
    """The morph's frames (N, C, H, W) in [-1, 1]; as morph_steps."""
    return final_image(morph_steps(pipe, start, end, points))


def reading(probabilities: torch.Tensor) -> str:
    """What a classifier reads each frame as, e.g. '3 3 3 (8) 8 8': the most likely digit, in
    brackets where it is less than 50% sure."""
    confidence, digits = probabilities.max(1)
    return " ".join(f"{d}" if c > 0.5 else f"({d})" for c, d in zip(confidence.tolist(), digits.tolist()))


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.morph", description="Morph from one digit or seed to another.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--start", type=cli.parse_digit_and_seed, required=True, help="DIGIT:SEED, e.g. 3:1")
    p.add_argument("--end", type=cli.parse_digit_and_seed, required=True,
                   help="DIGIT:SEED: the same digit and another seed, another digit, or both")
    p.add_argument("--frames", type=int, default=9, help=f"frames in the row, {MIN_FRAMES} to {MAX_FRAMES} (default 9)")
    p.add_argument("--sampler", choices=DETERMINISTIC_SAMPLERS, help="default: the weights' recommendation")
    p.add_argument("--steps", type=int, help="denoising steps (default: the weights' recommendation)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the weights')")
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--row", type=cli.file_ending(".png"), help="write the row of frames as a PNG")
    p.add_argument("--gif", type=cli.file_ending(".gif"), help="write the morph as a GIF that walks there and back")
    args = p.parse_args()
    if not (args.row or args.gif):
        p.error("give --row, --gif or both: where to write the morph")

    pipe = Pipeline.load(args.weights, device=args.device)
    with cli.settings_as_flags(p, {"frames": "--frames", "end": "--end", "guidance_scale": "--guidance",
                                   "steps": "--steps", "seed": "--start/--end (seed)", "digit": "--start/--end (digit)"}):
        start, end = morph_ends(pipe, args.start, args.end, guidance_scale=args.guidance, sampler=args.sampler,
                                steps=args.steps)
        frames = morph(pipe, start, end, frame_points(args.frames))
    images = to_uint8(frames)
    print(f"the classifier reads the frames as: {reading(class_probabilities(load_classifier(CLASSIFIER_PATH), frames))}")
    if args.row:
        save_png(upscale(grid(images, columns=len(images)), 2), args.row)
        print(f"wrote {args.row}")
    if args.gif:
        save_animation(back_and_forth(list(images)), args.gif, fps=FPS)
        print(f"wrote {args.gif}")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.morph")
