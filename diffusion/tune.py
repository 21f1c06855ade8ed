"""Fit the sampling timesteps to these weights (in the spirit of "Align Your Steps", Sabour et al. 2024).

    python -m diffusion.tune --steps 9 --guidance 3 --guidance-interval 443-777            # prints the fit
    python -m diffusion.tune --steps 9 --guidance 3 --guidance-interval 443-777 --write    # and recommends it
    python -m diffusion.tune --start 999,960,777,682,523,328,164,104,44 --guidance 2.25    # from these timesteps
    python -m diffusion.tune --weights weights/mnist-student.safetensors \
        --teacher weights/mnist-diffusion.safetensors --write                            # a student's scales

A few hundred starting noises (30 of each digit, by default) are solved twice with the same
sampler and guidance: once with many steps (the reference, close to the exact solution of the
sampler's ODE) and once with `steps` steps. Then the timesteps move one at a time, by 64, 32,
16 and 8, and each move is kept if the final images come closer to the reference (mean squared
error): coordinate descent. A move that would change how many steps are guided is not tried, so
the fit buys quality with better-placed steps, not with more network evaluations.

--write stores the settings, with the fitted timesteps, as the weights file's recommended
SamplingConfig (what the app, the CLI and the API use by default), and how they were fitted.

--teacher: for a student (train.py --distill-from), measure instead which guidance scale each of
its inputs acts as on the teacher's guidance line (measure.scales_acted), and with --write store
them as its guidance_inputs: the pipeline then tells it the input that acts as the scale asked for.
"""

import sys
import time
from dataclasses import asdict, replace

import torch

from . import cli
from .io import load_safetensors, save_safetensors
from .measure import scales_acted
from .pipeline import DEFAULT_WEIGHTS, REQUIRED_METADATA, Pipeline, SamplingConfig
from .samplers import SAMPLERS, final_image

MOVES = (64, 32, 16, 8)
STUDENT_INPUTS = (1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9, 10)  # where a student's scales are measured


def fit_timesteps(pipe: Pipeline, settings: SamplingConfig, per_digit: int = 30, seed: int = 1234,
                  reference_steps: int = 100, log=lambda message: None) -> tuple[list[int], dict]:
    """The fitted timesteps for settings.steps steps (starting from settings.timesteps, or even
    spacing), and facts about the fit: the error before and after, the samples, the time taken."""
    started = time.perf_counter()
    low, high = settings.guidance_interval or pipe.all_timesteps
    request = pipe.settings(list(range(pipe.model.config.num_classes)), seed, settings.guidance_scale, settings.sampler,
                            settings.steps, per_digit, (low, high))
    x_T = pipe.starting_noise(len(request.labels), torch.Generator(pipe.device).manual_seed(seed))

    def solve(timesteps: list[int]) -> torch.Tensor:
        return final_image(pipe.denoise(x_T, request.labels, request, timesteps))

    reference = solve(pipe.schedule.timesteps(reference_steps))

    def error(timesteps: list[int]) -> float:
        return (solve(timesteps) - reference).pow(2).mean().item()

    def guided(timesteps: list[int]) -> int:
        return sum(low <= t <= high for t in timesteps)

    timesteps = pipe.schedule.timesteps(settings.steps, fitted=settings.timesteps)
    first_error = best = error(timesteps)
    log(f"start {timesteps}: error {best:.6f}")
    for move in MOVES:
        improved = True
        while improved:
            improved = False
            for i in range(1, len(timesteps)):  # the first step stays at T-1, pure noise
                for delta in (-move, move):
                    candidate = timesteps.copy()
                    candidate[i] += delta
                    below = candidate[i + 1] if i + 1 < len(candidate) else -1
                    if not below < candidate[i] < candidate[i - 1] or guided(candidate) != guided(timesteps):
                        continue
                    candidate_error = error(candidate)
                    if candidate_error < best:
                        timesteps, best, improved = candidate, candidate_error, True
                        log(f"move {move}: {timesteps}: error {best:.6f}")
    facts = {"error_before": first_error, "error_after": best, "samples": len(request.labels), "seed": seed,
             "reference_steps": reference_steps, "seconds": round(time.perf_counter() - started, 1)}
    return timesteps, facts


def guidance_inputs(student: Pipeline, teacher: Pipeline, per_digit: int) -> tuple[tuple[tuple[float, float], ...], dict]:
    """A student's SamplingConfig.guidance_inputs: (scale, input) pairs from (1, 1), each of
    STUDENT_INPUTS it was taught with the scale it acts as, to 0.01. An input that acts no stronger
    than a smaller one is left out, so that the pairs rise. Also facts about the measure."""
    started = time.perf_counter()
    inputs = [w for w in STUDENT_INPUTS if w <= student.model.config.guidance_input]
    pairs = [(1.0, 1.0)]
    for given, scale in zip(inputs, scales_acted(student, teacher, inputs, per_digit)):
        if round(scale, 2) > pairs[-1][0]:
            pairs.append((round(scale, 2), float(given)))
    facts = {"images": per_digit * teacher.model.config.num_classes, "timesteps": 5,
             "seconds": round(time.perf_counter() - started, 1)}
    return tuple(pairs), facts


def write_recommendation(path: str, sampling_config: SamplingConfig, fit_name: str, facts: dict) -> None:
    """Store sampling_config as the weights' recommendation, and how it was found under fit_name."""
    tensors, metadata = load_safetensors(path, REQUIRED_METADATA)
    metadata["sampling_config"] = asdict(sampling_config)
    metadata[fit_name] = {**facts, "command": "python -m diffusion.tune " + " ".join(sys.argv[1:])}
    save_safetensors(path, tensors, metadata)
    print(f"wrote {path}: recommended {asdict(sampling_config)}")


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.tune", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--sampler", choices=list(SAMPLERS), help="a deterministic one (default: the weights' recommendation)")
    p.add_argument("--steps", type=int, help="default: the weights' recommendation")
    p.add_argument("--guidance", type=float, help="default: the weights' recommendation")
    p.add_argument("--guidance-interval", type=cli.parse_guidance_interval, help=cli.GUIDANCE_INTERVAL_HELP)
    p.add_argument("--start", type=lambda text: tuple(int(t) for t in text.split(",")),
                   help="timesteps to start the fit from, from T-1 down, e.g. 999,960,777 (default: the weights' "
                        "fitted ones for this step count, else even spacing)")
    p.add_argument("--per-digit", type=int, default=30, help="starting noises of each digit (default 30)")
    p.add_argument("--reference-steps", type=int, default=100,
                   help="steps of the reference the fit comes close to (default 100: near the exact solution of "
                        "the sampler's ODE; fewer, a quicker and rougher fit)")
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--teacher", help="the weights a student (--weights) learned from: measure the scales its inputs act "
                                     "as, rather than fit timesteps")
    p.add_argument("--write", action="store_true", help="store the fitted settings as the weights' recommendation")
    args = p.parse_args()
    if args.per_digit < 1:
        p.error("--per-digit must be at least 1")
    if args.sampler == "ddpm":
        p.error("--sampler must be deterministic (ddim or dpmpp): a fit needs the same path every time")

    pipe = Pipeline.load(args.weights, device=args.device)
    if args.teacher:
        if not pipe.model.config.guidance_input:
            p.error(f"--teacher: {args.weights} is not a student (train.py --distill-from makes one)")
        pairs, facts = guidance_inputs(pipe, Pipeline.load(args.teacher, device=args.device), args.per_digit)
        print("scale <- the student's input: " + ", ".join(f"{scale:g} <- {given:g}" for scale, given in pairs))
        calibrated = replace(pipe.sampling_config, guidance_inputs=pairs)
        if args.write:
            try:
                calibrated.check(pipe.schedule.num_timesteps, student=True)
            except ValueError as e:
                p.error(f"--teacher: not written, {e}: train it longer, or recommend less guidance")
            write_recommendation(args.weights, calibrated, "guidance_fit", facts)
        return
    given = {"guidance_scale": args.guidance, "sampler": args.sampler, "steps": args.steps or (args.start and len(args.start)),
             "guidance_interval": cli.guidance_interval(pipe, args.guidance_interval)}
    settings = replace(pipe.sampling_config, **{name: value for name, value in given.items() if value is not None})
    if args.start:
        if len(args.start) != settings.steps or pipe.schedule.timesteps(settings.steps, fitted=args.start) != list(args.start):
            p.error(f"--start must be {settings.steps} distinct timesteps from {pipe.schedule.num_timesteps - 1} down")
        settings = replace(settings, timesteps=args.start)
    elif settings.timesteps is not None and len(settings.timesteps) != settings.steps:
        settings = replace(settings, timesteps=None)  # fitted for another step count: start from even spacing
    cli.check_sweep(p, pipe, [(settings.sampler, settings.steps)], [settings.guidance_scale],
                    guidance_intervals=[settings.guidance_interval])
    if not settings.steps < args.reference_steps <= pipe.schedule.num_timesteps:
        p.error(f"--reference-steps must be more than the {settings.steps} steps fitted, and at most "
                f"{pipe.schedule.num_timesteps}, not {args.reference_steps}")
    timesteps, facts = fit_timesteps(pipe, settings, args.per_digit, reference_steps=args.reference_steps,
                                     log=lambda message: print(message, flush=True))
    fitted = replace(settings, timesteps=tuple(timesteps))
    print(f"fitted timesteps {list(timesteps)}: error {facts['error_before']:.6f} -> {facts['error_after']:.6f} "
          f"({facts['samples']} samples, {facts['seconds']:.0f} s)")
    if args.write:
        write_recommendation(args.weights, fitted, "sampling_fit", facts)


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.tune")
