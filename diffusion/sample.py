"""Generate digits from the command line.

    python -m diffusion.sample --digits 0-9 --per-digit 100 --out samples.npz --grid grid.png --gif process.gif

samples.npz holds `images` (N, 28, 28) uint8 and `labels` (N,) int64, the digit each image
was asked to be. Options left out take the weights' recommended settings.
"""

import argparse

import numpy as np

from . import cli
from .io import atomic_write
from .media import sample_grid, save_gif, save_png, to_uint8, upscale
from .pipeline import DEFAULT_WEIGHTS, MAX_SEED, Pipeline
from .samplers import SAMPLERS

GIF_SCALE = 4  # 28 px digits become 112 px, nearest neighbour


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return int(text)


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.sample", description="Generate MNIST digits.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--digits", type=cli.parse_digits, default=list(range(10)), help="e.g. 7, 3,7 or 0-9 (default 0-9)")
    p.add_argument("--per-digit", type=non_negative_int, default=1, help="samples of each digit")
    p.add_argument("--sampler", choices=list(SAMPLERS), help="default: the weights' recommendation")
    p.add_argument("--steps", type=non_negative_int, help="denoising steps (default: the weights' recommendation)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale w: 0 unconditional, 1 conditional")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    p.add_argument("--out", default="samples.npz", help="npz with images and labels")
    p.add_argument("--grid", help="also write a PNG grid, one column per digit")
    p.add_argument("--gif", help="also write an animated GIF of the denoising process")
    args = p.parse_args()
    if args.per_digit < 1:
        p.error("--per-digit must be at least 1")
    if args.seed > MAX_SEED:
        p.error("--seed must be at most 2^63-1")

    pipeline = Pipeline.load(args.weights, device=args.device)
    frames = []
    for step in pipeline.sample_steps(args.digits, guidance_scale=args.guidance, sampler=args.sampler,
                                      steps=args.steps, seed=args.seed, samples_per_digit=args.per_digit):
        if args.gif:
            frames.append(upscale(sample_grid(to_uint8(step.x), len(args.digits)), GIF_SCALE))
    images = to_uint8(step.x)
    labels = Pipeline.labels(args.digits, args.per_digit).numpy()

    with atomic_write(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels)
    print(f"wrote {args.out}: {len(images)} images of digits {', '.join(map(str, args.digits))}")
    if args.grid:
        save_png(upscale(sample_grid(images, len(args.digits)), 2), args.grid)
        print(f"wrote {args.grid}")
    if args.gif:
        save_gif(frames, args.gif)
        print(f"wrote {args.gif}: {len(frames)} frames")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.sample")
