"""How long does generation take? Prints medians over repeated runs, warm-up excluded.

    python -m diffusion.bench                                 # 10 digits, the recommended settings
    python -m diffusion.bench --samplers dpmpp:10,ddim:50,ddpm:1000 --repeats 5
"""

import statistics
import time

import torch

from . import cli
from .pipeline import DEFAULT_WEIGHTS, Pipeline


def time_generation(pipeline: Pipeline, digits: list[int], repeats: int, **settings) -> list[float]:
    """Seconds for each of `repeats` calls of pipeline.generate, after one warm-up call."""
    pipeline.generate(digits, **settings)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline.generate(digits, **settings)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.bench", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--samplers", help="sampler:steps pairs, e.g. dpmpp:10,ddim:50 (default: recommended)")
    p.add_argument("--guidance", type=float, help="default: recommended")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    pipeline = Pipeline.load(args.weights, device=args.device)
    recommended = pipeline.sampling_config
    guidance_scale = recommended.guidance_scale if args.guidance is None else args.guidance
    samplers = cli.parse_samplers(args.samplers) if args.samplers else [(recommended.sampler, recommended.steps)]
    print(f"device {pipeline.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"10 digits (0-9), guidance {guidance_scale:g}, {args.repeats} timed runs after 1 warm-up")
    for sampler, steps in samplers:
        times = time_generation(pipeline, list(range(10)), args.repeats, sampler=sampler, steps=steps,
                                guidance_scale=guidance_scale, seed=0)
        print(f"{sampler:>6} {steps:>4} steps: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.bench")
