"""Generate digits from the command line.

    python -m diffusion.sample --digits 0-9 --per-digit 100 --out samples.npz --grid grid.png --gif process.gif

samples.npz holds `images` (N, 28, 28) uint8 and `labels` (N,) int64, the digit each image
was asked to be. Options left out take the weights' recommended settings. The GIF is the
app's animation (media.denoising_animation): x_t above x0, at least 3 s of motion, at most
MAX_ANIMATED_PER_DIGIT samples of each digit. --probabilities readings.csv adds what the
classifier reads each step's estimate of the clean image x0 as, which shows when each digit
is decided: a row per image and step (image, digit, step, timestep, alpha_bar, p0 ... p9).
"""

import csv
import numpy as np

from . import cli
from .classifier import class_probabilities, load_classifier
from .io import atomic_write
from .media import MAX_ANIMATED_PER_DIGIT, denoising_animation, sample_grid, save_animation, save_png, to_uint8, upscale
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .settings import MAX_GUIDANCE_SCALE
from .samplers import SAMPLERS, Steps

# The library's parameter names, as this command spells them.
FLAGS = {"digits": "--digits", "guidance_scale": "--guidance", "sampler": "--sampler", "steps": "--steps",
         "seed": "--seed", "samples_per_digit": "--per-digit", "guidance_interval": "--guidance-interval"}


def read_along(steps: Steps, classifier, readings: list[tuple]) -> Steps:
    """Pass the steps on, appending to readings each step's number, timestep, alpha_bar and the
    classifier's probabilities of its x0 (N, 10) (not the step itself: its tensors are big)."""
    def reading(steps: Steps):
        for step in steps:
            readings.append((step.index + 1, step.timestep, step.alpha_bar, class_probabilities(classifier, step.x0)))
            yield step

    return Steps(reading(steps), len(steps))


def save_readings(readings: list[tuple], labels: np.ndarray, path: str) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "digit", "step", "timestep", "alpha_bar", *(f"p{k}" for k in range(10))])
            for step_number, timestep, alpha_bar, probabilities in readings:
                for image, (label, row) in enumerate(zip(labels, probabilities.tolist())):
                    writer.writerow([image, int(label), step_number, timestep, f"{alpha_bar:.6g}",
                                     *(f"{p:.6f}" for p in row)])


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.sample", description="Generate MNIST digits.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--digits", type=cli.parse_digits, default=list(range(10)), help="e.g. 7, 3,7 or 0-9 (default 0-9)")
    p.add_argument("--per-digit", type=int, default=1, help="samples of each digit (default 1)")
    p.add_argument("--sampler", choices=list(SAMPLERS), help="default: the weights' recommendation")
    p.add_argument("--steps", type=int, help="denoising steps, 1 to 1000 (default: the weights' recommendation)")
    p.add_argument("--guidance", type=float, help=f"classifier-free guidance scale, 0 to {MAX_GUIDANCE_SCALE:g}: "
                                                  "0 unconditional, 1 conditional (default: the weights')")
    p.add_argument("--guidance-interval", type=cli.parse_guidance_interval, help=cli.GUIDANCE_INTERVAL_HELP)
    p.add_argument("--seed", type=int, default=0, help="0 to 2^63-1 (default 0)")
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--out", type=cli.file_ending(".npz"), default="samples.npz", help="npz with images and labels")
    p.add_argument("--grid", type=cli.file_ending(".png"), help="also write a PNG grid, one column per digit")
    p.add_argument("--gif", type=cli.file_ending(".gif"),
                   help=f"also write the denoising as an animated GIF (of at most {MAX_ANIMATED_PER_DIGIT} per digit)")
    p.add_argument("--probabilities", type=cli.file_ending(".csv"),
                   help="also write what the classifier reads each step's x0 as, a row per image and step")
    args = p.parse_args()

    pipeline = Pipeline.load(args.weights, device=args.device)
    with cli.settings_as_flags(p, FLAGS):
        settings = pipeline.settings(args.digits, args.seed, args.guidance, args.sampler, args.steps, args.per_digit,
                                     cli.guidance_interval(pipeline, args.guidance_interval))
    steps, readings, frames = pipeline.sample_steps(settings), [], []
    if args.probabilities:
        steps = read_along(steps, load_classifier(device=pipeline.device), readings)
    if args.gif:
        for step, new_frames in denoising_animation(steps, len(args.digits), args.per_digit):
            frames += new_frames
    else:
        *_, step = steps
    images = to_uint8(step.x)
    labels = settings.labels.numpy()

    with atomic_write(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels)
    print(f"wrote {args.out}: {len(images)} images of digits {', '.join(map(str, args.digits))}")
    if args.grid:
        save_png(upscale(sample_grid(images, len(args.digits)), 2), args.grid)
        print(f"wrote {args.grid}")
    if args.gif:
        save_animation(frames, args.gif)
        print(f"wrote {args.gif}: {len(frames)} frames")
    if args.probabilities:
        save_readings(readings, labels, args.probabilities)
        print(f"wrote {args.probabilities}: the ten probabilities of each image at each of {len(readings)} steps")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.sample")
