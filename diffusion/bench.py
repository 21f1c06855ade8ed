"""How fast is sampling, and how close to what this machine can do? Prints a table, writes JSON.

    python -m diffusion.bench                      # each sampler at its usual step count; 1, 10, 64 digits
    python -m diffusion.bench --quick              # fewer repeats and sizes, a smaller time budget
    python -m diffusion.bench --samplers dpmpp:10,ddim:50 --out bench.json
    python -m diffusion.bench --weights weights/mnist-student.safetensors --vs weights/mnist-diffusion.safetensors

Every run uses classifier-free guidance as the weights recommend: two noise predictions per
image at a guided step, in one batched forward pass, and one elsewhere; each cell counts them
(EvaluationCounter). Each cell is timed after a warm-up run of the same batch shape, and
reports the median and the range over its repeats; a cell whose single run would exceed the
time budget is skipped (and says so). In the same run, for comparison: our model with
1000-step DDPM, and diffusers' UNet2DModel at the size the Hugging Face diffusion course uses
for class-conditional MNIST, driven by DPMSolverMultistepScheduler at the same step count as
the first setting measured (by default the recommended one; needs `pip install diffusers`;
speed only, so its weights are random). And what the app's "What does the model think it is?"
costs: its stream of animation frames at that setting, with and without the classifier reading
each step's x0, runs alternating, for 1 and 10 digits. With --vs, ten digits at each weights
file's own recommended settings (the student against its teacher, say), runs alternating.
"""

import json
import resource
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import cli
from .classifier import StepReadings, load_classifier
from .io import atomic_write
from .measure import EvaluationCounter, synchronize, time_generation, timed_runs
from .media import denoising_animation
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .samplers import STEP_RANGES
from .schedule import denoising_loss
from .settings import Settings
from .unet import UNet


def time_first_step(pipeline: Pipeline, settings: Settings, repeats: int) -> list[float]:
    """Seconds from asking for a stream of steps to holding the first one (what the app shows first)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step = next(iter(pipeline.sample_steps(settings)))
        step.x.sum().item()  # waits for the device
        times.append(time.perf_counter() - started)
    return times


def time_streams(pipeline: Pipeline, classifier, settings: Settings, repeats: int) -> dict[bool, list[float]]:
    """Seconds for each run of the app's stream (the animation's frames as the steps come), without
    and with what the classifier reads each step's x0 as, read as the app reads it: the first
    step at once (the first preview), the rest at the end (a short run's result). Runs alternate,
    so that both see the same moments of a machine whose speed drifts: {False: [...], True: [...]}."""
    def stream(read: bool) -> None:
        readings = StepReadings(classifier)
        for step, frames in denoising_animation(pipeline.sample_steps(settings)):
            if read and frames:
                readings.add(step.index + 1, step.x0)
                if step.index == 0:
                    readings.probabilities()
        if read:
            readings.probabilities()
        synchronize(pipeline.device)

    times = {False: [], True: []}
    for read in (False, True):
        stream(read)  # warm-up
    for _ in range(repeats):
        for read in (False, True):
            started = time.perf_counter()
            stream(read)
            times[read].append(time.perf_counter() - started)
    return times


def matmul_peak_flops(device: torch.device, size: int = 2048, seconds: float = 2.0) -> float:
    """The best float32 matrix-multiply rate this device reaches, in FLOP/s: the yardstick."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def forward_flops_per_image(model: torch.nn.Module, batch: int = 8) -> float:
    """FLOPs of one noise prediction for one image, counted by torch.utils.flop_counter."""
    config = model.config
    x = torch.randn(batch, config.image_channels, config.image_size, config.image_size, device=next(model.parameters()).device)
    t, labels = torch.full((batch,), 500, device=x.device), torch.zeros(batch, dtype=torch.int64, device=x.device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x, t, labels)
    return counter.get_total_flops() / batch


def training_images_per_s(pipeline: Pipeline, batch_size: int = 128, steps: int = 10) -> float:
    """Training throughput: a fresh model of the same config, AdamW, the training loss, synthetic digits."""
    device = pipeline.device
    model = UNet(pipeline.model.config).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator(device).manual_seed(0)
    x0 = torch.rand(batch_size, 1, 28, 28, device=device, generator=generator) * 2 - 1
    labels = torch.randint(0, 10, (batch_size,), device=device, generator=generator)

    def train_step():
        loss = denoising_loss(model, pipeline.schedule, x0, labels, generator, 0.1, model.config.null_label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


def diffusers_course_seconds(device: torch.device, count: int, steps: int, guidance_scale: float,
                             repeats: int) -> tuple[list[float], int] | None:
    """The same job done the usual diffusers way: the Hugging Face diffusion course's
    class-conditioned MNIST U-Net (class embedding as 4 extra input channels) with
    DPMSolverMultistepScheduler and classifier-free guidance. Returns (seconds per run,
    parameter count), or None without diffusers."""
    try:
        from diffusers import DPMSolverMultistepScheduler, UNet2DModel
    except ImportError:
        return None
    torch.manual_seed(0)
    class_embedding = torch.nn.Embedding(11, 4).to(device)  # 10 digits and a null class for guidance
    unet = UNet2DModel(sample_size=28, in_channels=1 + 4, out_channels=1, layers_per_block=2,
                       block_out_channels=(32, 64, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")).to(device).eval()
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    labels = torch.tensor([d % 10 for d in range(count)] + [10] * count, device=device)

    @torch.inference_mode()
    def generate():
        scheduler.set_timesteps(steps)
        x = torch.randn(count, 1, 28, 28, device=device)
        for t in scheduler.timesteps:
            both = torch.cat([x, x])
            condition = class_embedding(labels)[:, :, None, None].expand(-1, -1, 28, 28)
            eps_cond, eps_uncond = unet(torch.cat([both, condition], dim=1), t).sample.chunk(2)
            x = scheduler.step(eps_uncond + guidance_scale * (eps_cond - eps_uncond), t, x).prev_sample
        synchronize(device)

    generate()  # warm-up
    return timed_runs(generate, repeats), sum(p.numel() for p in unet.parameters()) + class_embedding.weight.numel()


def reading_cost(pipeline: Pipeline, setting: tuple[str, int], guidance_scale: float, repeats: int) -> dict:
    """Print and return what reading each step's x0 with the classifier adds to the app's stream."""
    sampler, steps = setting
    classifier = load_classifier(device=pipeline.device)
    result = {}
    for count in (1, 10):
        settings = pipeline.settings(list(range(count)), sampler=sampler, steps=steps, guidance_scale=guidance_scale)
        times = time_streams(pipeline, classifier, settings, repeats)
        without, with_reading = statistics.median(times[False]), statistics.median(times[True])
        result[count] = {"without_s": without, "with_s": with_reading, "slower": with_reading / without - 1,
                         "ms_per_step": 1000 * (with_reading - without) / steps}
        print(f"stream with class probabilities, {sampler} {steps} steps, {count} digit{'s' if count > 1 else ''}: "
              f"median {1000 * with_reading:.1f} ms against {1000 * without:.1f} ms without "
              f"({result[count]['slower']:+.1%}, {result[count]['ms_per_step']:.2f} ms a step; {repeats} runs each, "
              "alternating)", flush=True)
    return result


def versus(pipeline: Pipeline, other_path: str, repeats: int) -> dict:
    """Print and return the time for ten digits at these weights' recommended settings against
    another file's at its own, runs alternating, so that both see the same moments of the machine."""
    other = Pipeline.load(other_path, device=pipeline.device)
    runs = [(pipe, pipe.settings(list(range(10)))) for pipe in (pipeline, other)]

    def generate(pipe: Pipeline, settings: Settings) -> None:
        pipe.generate(settings)
        synchronize(pipe.device)

    times: list[list[float]] = [[], []]
    for pipe, settings in runs:
        generate(pipe, settings)  # warm-up
    for _ in range(repeats):
        for (pipe, settings), its_times in zip(runs, times):
            its_times += timed_runs(lambda: generate(pipe, settings), 1)
    ratio = statistics.median(times[0]) / statistics.median(times[1])
    print(f"ten digits, each at its recommended settings: median {statistics.median(times[0]):.3f} s against "
          f"{statistics.median(times[1]):.3f} s with {other_path} ({ratio:.2f}x; {repeats} runs each, alternating)")
    return {"ours": summary(times[0]), "vs": {**summary(times[1]), "weights": other_path}, "ours_over_vs": ratio}


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def parse_args() -> tuple:
    """The command line: (args, repeats, budget, sizes), the defaults filled in for --quick or not."""
    p = cli.ArgumentParser(prog="python -m diffusion.bench", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--samplers", type=cli.parse_samplers,
                   help="sampler:steps pairs (default: each sampler at its usual step count)")
    p.add_argument("--sizes", default=None, help="digits per run, e.g. 1,10,64 (default; --quick: 1,10)")
    p.add_argument("--guidance", type=float, help="default: the weights' recommendation")
    p.add_argument("--repeats", type=int, help="timed runs per cell (default 5; --quick: 3)")
    p.add_argument("--budget", type=float, help="seconds one run of a cell may take (default 120; --quick: 20)")
    p.add_argument("--quick", action="store_true", help="a first look in about a minute on a laptop CPU")
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--vs", metavar="WEIGHTS", help="also time ten digits against these weights, alternating")
    p.add_argument("--out", default="bench.json", help="JSON results (default bench.json)")
    args = p.parse_args()
    repeats = (3 if args.quick else 5) if args.repeats is None else args.repeats
    budget = (20.0 if args.quick else 120.0) if args.budget is None else args.budget
    sizes = [int(s) for s in (args.sizes or ("1,10" if args.quick else "1,10,64")).split(",") if s.strip().isdigit()]
    if repeats < 1 or budget <= 0 or not sizes or min(sizes) < 1:
        p.error("--repeats, --budget and --sizes must be positive")
    return p, args, repeats, budget, sizes


def measure_cell(pipeline: Pipeline, settings: Settings, repeats: int, budget: float, flops_per_image: float) -> dict:
    """One cell of the table: these settings, timed whole and to their first step, their evaluations counted."""
    count = len(settings.digits)
    if pipeline.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    times = time_generation(pipeline, settings, repeats, budget)
    first = time_first_step(pipeline, settings, repeats)
    with EvaluationCounter(pipeline.model) as counter:
        pipeline.generate(settings)
    cell = {"sampler": settings.sampler, "steps": settings.steps, "digits": count, **summary(times),
            "evaluations_per_image": counter.images / count, "images_per_s": count / statistics.median(times),
            "first_step_s": statistics.median(first),
            "flops_per_s": flops_per_image * counter.images / statistics.median(times)}
    if pipeline.device.type == "cuda":
        cell["peak_memory_mb"] = torch.cuda.max_memory_allocated(pipeline.device) / 2**20
    return cell


def measure_cells(pipeline: Pipeline, samplers: list, sizes: list[int], guidance_scale: float, repeats: int,
                  budget: float, flops_per_image: float) -> tuple[list[dict], list[dict]]:
    """(cells, skipped): each sampler setting at each size, but none whose run would pass the budget."""
    cells, skipped = [], []
    for sampler, steps in samplers:
        estimate_per_image = None
        for count in sizes:
            if estimate_per_image is not None and estimate_per_image * count > budget:
                skipped.append({"sampler": sampler, "steps": steps, "digits": count,
                                "estimated_s": estimate_per_image * count})
                continue
            print(f"measuring {sampler} {steps} steps, {count} digits", file=sys.stderr, flush=True)
            settings = pipeline.settings([i % 10 for i in range(count)], sampler=sampler, steps=steps,
                                         guidance_scale=guidance_scale)
            cells.append(measure_cell(pipeline, settings, repeats, budget, flops_per_image))
            estimate_per_image = cells[-1]["median_s"] / count
    return cells, skipped


def print_table(cells: list[dict], skipped: list[dict], peak: float, budget: float) -> None:
    header = f"{'sampler':>7} {'steps':>5} {'digits':>6} {'evals/img':>9} {'median s':>9} {'min-max s':>13} " \
             f"{'img/s':>7} {'first step ms':>13} {'GFLOP/s':>8} {'of peak':>7}"
    print(header + "\n" + "-" * len(header))
    for cell in cells:
        cell["share_of_matmul_peak"] = cell["flops_per_s"] / peak
        print(f"{cell['sampler']:>7} {cell['steps']:>5} {cell['digits']:>6} {cell['evaluations_per_image']:>9g} "
              f"{cell['median_s']:>9.3f} "
              f"{cell['min_s']:>6.3f}-{cell['max_s']:<6.3f} {cell['images_per_s']:>7.1f} "
              f"{1000 * cell['first_step_s']:>13.1f} {cell['flops_per_s'] / 1e9:>8.1f} "
              f"{cell['share_of_matmul_peak']:>7.0%}")
    for cell in skipped:
        print(f"{cell['sampler']:>7} {cell['steps']:>5} {cell['digits']:>6}   skipped: one run would take about "
              f"{cell['estimated_s']:.0f} s (--budget {budget:g})")


def comparisons(pipeline: Pipeline, cells: list[dict], first: tuple[str, int], guidance_scale: float,
                repeats: int) -> dict:
    """The first setting measured (by default the recommended one) against 1000-step DDPM and
    diffusers, and what reading each step's x0 costs it."""
    def cell_for(sampler, steps, count):
        return next((c for c in cells if (c["sampler"], c["steps"], c["digits"]) == (sampler, steps, count)), None)

    result, (ours_sampler, ours_steps) = {}, first
    ours = cell_for(ours_sampler, ours_steps, 10)
    ddpm = cell_for("ddpm", 1000, 10) or cell_for("ddpm", 1000, 1)
    ours_at_ddpm_size = ddpm and cell_for(ours_sampler, ours_steps, ddpm["digits"])
    if ours_at_ddpm_size:
        result["ddpm_1000_over_ours"] = ddpm["median_s"] / ours_at_ddpm_size["median_s"]
        print(f"\n1000-step DDPM takes {result['ddpm_1000_over_ours']:.0f}x as long as "
              f"{ours_sampler}-{ours_steps} ({ddpm['digits']} digits).")
    diffusers = ours and diffusers_course_seconds(pipeline.device, 10, ours_steps, guidance_scale, repeats)
    if ours and diffusers is None:
        print("diffusers is not installed (pip install diffusers): no comparison with it.")
    elif diffusers:
        times, parameters = diffusers
        result["diffusers"] = {**summary(times), "parameters": parameters, "steps": ours_steps}
        result["diffusers_over_ours"] = statistics.median(times) / ours["median_s"]
        print(f"diffusers UNet2DModel ({parameters / 1e6:.2f}M parameters; ours "
              f"{sum(p.numel() for p in pipeline.model.parameters()) / 1e6:.2f}M) + DPMSolverMultistepScheduler, "
              f"{ours_steps} steps, 10 digits: median {statistics.median(times):.3f} s, "
              f"{result['diffusers_over_ours']:.2f}x ours.")
    result["reading"] = reading_cost(pipeline, first, guidance_scale, max(repeats, 3) * 3)
    return result


def main() -> None:
    p, args, repeats, budget, sizes = parse_args()
    pipeline = Pipeline.load(args.weights, device=args.device)
    recommended = pipeline.sampling_config
    guidance_scale = recommended.guidance_scale if args.guidance is None else args.guidance
    default = (recommended.sampler, recommended.steps)
    samplers = args.samplers or [default] + [(name, usual) for name, (_, _, usual) in STEP_RANGES.items()
                                             if (name, usual) != default]
    cli.check_sweep(p, pipeline, samplers, [guidance_scale])
    device = pipeline.device
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"guidance {guidance_scale:g} at timesteps {cli.interval_text(recommended.guidance_interval)}; "
          f"up to {repeats} timed runs per cell after a warm-up", flush=True)

    flops_per_image = forward_flops_per_image(pipeline.model)
    # This machine's matmul rate, measured before and after the cells: the best of the two is
    # the yardstick, so that a busy moment does not flatter the model's share of it.
    peak_before = matmul_peak_flops(device)
    cells, skipped = measure_cells(pipeline, samplers, sizes, guidance_scale, repeats, budget, flops_per_image)
    peak_after = matmul_peak_flops(device)
    peak = max(peak_before, peak_after)
    print(f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s (best of {peak_before / 1e9:.0f} before and "
          f"{peak_after / 1e9:.0f} after); model forward {flops_per_image / 1e6:.0f} MFLOP per image")
    print_table(cells, skipped, peak, budget)
    compared = comparisons(pipeline, cells, samplers[0], guidance_scale, repeats)
    if args.vs:
        compared["versus"] = versus(pipeline, args.vs, max(repeats, 3) * 3)

    train_rate = training_images_per_s(pipeline)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"training: {train_rate:.0f} images/s (batch 128); peak memory of this process: {peak_rss_mb:.0f} MB RSS")
    results = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": sys.version.split()[0], "guidance_scale": guidance_scale,
               "matmul_peak_flops_per_s": peak, "forward_flops_per_image": flops_per_image, "cells": cells,
               "skipped": skipped, "comparisons": compared, "training_images_per_s": train_rate,
               "peak_rss_mb": peak_rss_mb}
    with atomic_write(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.bench")
