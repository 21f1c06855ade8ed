"""Measure a diffusion model: does it draw the digit asked for, and do its digits look real?

    python -m diffusion.evaluate --per-digit 100                                   # the recommended settings
    python -m diffusion.evaluate --samplers dpmpp:10,dpmpp:20,ddim:50 --guidance 1,2,3 --table results.md
    python -m diffusion.evaluate --guidance 1.5,3 --guidance-interval all,443-777    # where guidance applies

For each sampler x steps x guidance setting it reports, as JSON, by each of two judges, the
classifiers of diffusion/classifier.py (a convnet and a resnet, built and trained differently):
- accuracy: the share of samples that the judge reads as the requested digit, overall and per digit;
- frechet_distance: the Fréchet distance between the judge's penultimate features of the
  samples and of the 10,000 MNIST test digits, beside frechet_floor, the same distance for as
  many real training digits (what a perfect model would score at this N);
- evaluations_per_image: the network's image-evaluations per image, counted by a hook on the
  network (measure.EvaluationCounter): two per image at a guided step, one elsewhere;
- seconds_for_10_digits: the median time to generate one of each digit with these settings.

Settings are chosen on the tuning seed (0, the default) and reported on the held-out seed
(--seed 7), whose samples and real digits no choice has seen.

    python -m diffusion.evaluate --when-decided --per-digit 100                    # no MNIST needed

reports instead when the digit is decided: at which step the classifier, reading each step's
estimate of the clean image, first gives the requested digit more than 50%, as the median and
90th percentile over the samples of each digit, with that step's timestep and signal sqrt(alpha_bar).
"""

import itertools
import json
import math
import statistics
from dataclasses import dataclass
from typing import Iterator

import torch

from . import cli
from .classifier import DEFAULT_PATH as CLASSIFIER_PATH
from .classifier import RESNET_PATH, DigitClassifier, class_probabilities, first_passing, load_classifier, predict
from .data import default_data_dir, load_mnist, to_model_range
from .io import atomic_write
from .measure import EvaluationCounter, frechet_distance, time_generation
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .settings import labels_of

TUNING_SEED, HELD_OUT_SEED = 0, 7


@dataclass
class Judge:
    """A classifier, and what it makes of real digits: the test digits' features (the reference)
    and the floor, the Fréchet distance a perfect model would score at this sample size."""
    name: str
    classifier: DigitClassifier
    reference_features: torch.Tensor
    floor: float

    def verdict(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        predicted, features = predict(self.classifier, images)
        correct = predicted == labels
        return {"accuracy": round(correct.float().mean().item(), 4),
                "per_digit_accuracy": {d: round(correct[labels == d].float().mean().item(), 4) for d in range(10)},
                "frechet_distance": round(frechet_distance(features, self.reference_features), 3),
                "frechet_floor": round(self.floor, 3)}


def judges_of(classifiers: list[DigitClassifier], data_dir: str, per_digit: int, seed: int) -> list[Judge]:
    """Each classifier with its reference and its floor (per_digit real training digits of each
    class, drawn with seed)."""
    test_images, _ = load_mnist(data_dir, train=False)
    train_images, train_labels = load_mnist(data_dir, train=True)
    real = to_model_range(train_images[stratified_sample(train_labels, per_digit, seed)])
    judges = []
    for classifier in classifiers:
        _, reference_features = predict(classifier, to_model_range(test_images))
        judges.append(Judge(classifier.architecture, classifier, reference_features,
                            frechet_distance(predict(classifier, real)[1], reference_features)))
    return judges


def stratified_sample(labels: torch.Tensor, per_digit: int, seed: int) -> torch.Tensor:
    """Indices of per_digit random examples of each digit."""
    generator = torch.Generator().manual_seed(seed)
    indices = [torch.nonzero(labels == d).flatten() for d in range(10)]
    return torch.cat([of_digit[torch.randperm(len(of_digit), generator=generator)[:per_digit]] for of_digit in indices])


def batches(per_digit: int, batch_size: int, seed: int) -> Iterator[tuple[list[int], int]]:
    """per_digit samples of each digit, in batches of whole digits: (the batch's digits, its seed)."""
    labels = labels_of(range(10), per_digit)
    for first in range(0, len(labels), batch_size):
        yield sorted(set(labels[first:first + batch_size].tolist())), seed + first


def evaluate(pipeline: Pipeline, judges: list[Judge], sampler: str, steps: int, guidance_scale: float,
             guidance_interval: tuple[int, int] | None, per_digit: int, seed: int, batch_size: int) -> dict:
    """One row of the table: these settings (guidance_interval None: the recommended one) on
    per_digit samples of each digit."""
    digits = list(range(10))
    labels = labels_of(digits, per_digit)
    options = {"guidance_scale": guidance_scale, "sampler": sampler, "steps": steps, "guidance_interval": guidance_interval}
    with EvaluationCounter(pipeline.model) as counter:
        images = torch.cat([pipeline.generate(pipeline.settings(batch_digits, batch_seed, **options, samples_per_digit=per_digit)).cpu()
                            for batch_digits, batch_seed in batches(per_digit, batch_size, seed)])
    ten_digits = pipeline.settings(digits, seed, **options)
    return {
        "guidance_scale": guidance_scale, "sampler": sampler, "steps": steps,
        "guidance_interval": ten_digits.guidance_interval, "samples": len(labels),
        "evaluations_per_image": counter.images / len(images),
        "judges": {judge.name: judge.verdict(images, labels) for judge in judges},
        "seconds_for_10_digits": round(statistics.median(time_generation(pipeline, ten_digits, 5 if steps <= 50 else 1)), 3),
        "device": str(pipeline.device),
    }


def when_decided(pipeline: Pipeline, classifier, sampler: str, steps: int, guidance_scale: float, per_digit: int,
                 seed: int, batch_size: int) -> dict:
    """For each digit, the step at which its class is decided: the first step whose x0 estimate the
    classifier reads as the requested digit with more than 50% (at guidance 0, which asks for no
    digit: as the digit the final image is read as, grouped by that digit). Samples as evaluate() does."""
    digits = list(range(10))
    labels = labels_of(digits, per_digit)
    decided, final = [], []
    for batch_digits, batch_seed in batches(per_digit, batch_size, seed):
        settings = pipeline.settings(batch_digits, batch_seed, guidance_scale, sampler, steps, per_digit)
        readings = torch.stack([class_probabilities(classifier, step.x0) for step in pipeline.sample_steps(settings)])
        # Unconditional (guidance 0) asks for no digit: then the digit decided is the one it becomes.
        becomes = readings[-1].argmax(1)
        decided += first_passing(readings, becomes if guidance_scale == 0 else settings.labels)
        final += becomes.tolist()
    if guidance_scale == 0:
        labels = torch.tensor(final)
    timesteps = pipeline.timesteps(steps)
    alphas_cumprod = pipeline.schedule.alphas_cumprod

    def at(step_index: int | None) -> dict:
        """A step (1-based) as a teacher would quote it: its timestep, and how much of the clean image
        x_t holds (x_t = signal x_0 + noise eps, signal = sqrt(alpha_bar): 0 is pure noise, 1 the image)."""
        if step_index is None:
            return {"step": None}
        t = timesteps[step_index]
        return {"step": step_index + 1, "timestep": t, "signal": round(alphas_cumprod[t].item() ** 0.5, 3)}

    per_digit_result = {}
    for d in digits:
        of_digit = [decided[i] for i in range(len(labels)) if labels[i] == d]
        if not of_digit:  # at guidance 0, no sample became this digit
            continue
        ranked = sorted(of_digit, key=lambda s: math.inf if s is None else s)  # never decided counts as last
        per_digit_result[d] = {"median": at(ranked[(len(ranked) - 1) // 2]),  # the lower median: a step that happened
                               "p90": at(ranked[math.ceil(0.9 * len(ranked)) - 1]),  # nearest rank
                               "never": sum(s is None for s in of_digit), "samples": len(of_digit)}
    return {"sampler": sampler, "steps": steps, "guidance_scale": guidance_scale, "samples": len(labels),
            "per_digit": per_digit_result}


def decided_table(result: dict) -> str:
    def cell(at: dict) -> str:
        return "never" if at["step"] is None else f"{at['step']} (t = {at['timestep']}, signal {at['signal']:.2f})"

    lines = [f"{result['sampler']}, {result['steps']} steps, guidance {result['guidance_scale']:g}, "
             f"{result['samples']} samples: the step (of {result['steps']}) at which the "
             f"{'digit the final image shows' if result['guidance_scale'] == 0 else 'requested digit'} first passes 50%",
             "", "| digit | samples | median step | 90th percentile | never |", "| ---: | ---: | --- | --- | ---: |"]
    for d, r in result["per_digit"].items():
        lines.append(f"| {d} | {r['samples']} | {cell(r['median'])} | {cell(r['p90'])} | {r['never']} |")
    return "\n".join(lines) + "\n"


def markdown_table(results: list[dict]) -> str:
    """One row per setting; per judge, its accuracy, worst digit and Fréchet distance (floor) x floor."""
    names = list(results[0]["judges"])
    lines = ["| sampler | steps | guidance | guided at t | evaluations per image | "
             + " | ".join(f"{name}: accuracy | worst digit | Fréchet distance (floor) | x floor" for name in names)
             + " | s for 10 digits |",
             "| --- | ---: | ---: | ---: | ---: | " + "---: | " * 4 * len(names) + "---: |"]
    for r in results:
        cells = []
        for verdict in r["judges"].values():
            worst = min(verdict["per_digit_accuracy"].items(), key=lambda item: item[1])
            cells += [f"{verdict['accuracy']:.2%}", f"{worst[0]}: {worst[1]:.0%}",
                      f"{verdict['frechet_distance']:.2f} ({verdict['frechet_floor']:.2f})",
                      f"{verdict['frechet_distance'] / verdict['frechet_floor']:.2f}"]
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['guidance_scale']:g} | {cli.interval_text(r['guidance_interval'])} | "
                     f"{r['evaluations_per_image']:g} | " + " | ".join(cells) + f" | {r['seconds_for_10_digits']:.2f} ({r['device']}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.evaluate", description=__doc__.split("\n")[1])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--classifiers", type=lambda text: text.split(","), default=[str(CLASSIFIER_PATH), str(RESNET_PATH)],
                   help="the judges' weights, comma-separated, of different architectures (default: the shipped "
                        "convnet and resnet); --when-decided reads with the first")
    p.add_argument("--data-dir", default=default_data_dir(), help="MNIST folder (default: $MNIST_ROOT or data/)")
    p.add_argument("--samplers", help="sampler:steps pairs, e.g. dpmpp:10,ddim:50,ddpm:1000 (default: recommended)")
    p.add_argument("--guidance", help="guidance scales, e.g. 1,2,3 (default: recommended)")
    p.add_argument("--guidance-interval", type=lambda text: [cli.parse_guidance_interval(part) for part in text.split(",")],
                   help="comma-separated, each " + cli.GUIDANCE_INTERVAL_HELP)
    p.add_argument("--per-digit", type=int, default=100)
    p.add_argument("--seed", type=int, default=TUNING_SEED,
                   help=f"{TUNING_SEED} (the default) to choose settings on, {HELD_OUT_SEED} to report them")
    p.add_argument("--batch-size", type=int, default=1000, help="images generated at once")
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--out", help="also write the JSON results here")
    p.add_argument("--table", help="also write a markdown table here")
    p.add_argument("--when-decided", action="store_true",
                   help="report at which step each digit's class is decided, instead of accuracy and Fréchet distance")
    args = p.parse_args()
    if args.per_digit < 2 or args.batch_size < 1:
        p.error("--per-digit must be at least 2 and --batch-size at least 1")

    pipeline = Pipeline.load(args.weights, device=args.device)
    recommended = pipeline.sampling_config
    samplers = cli.parse_samplers(args.samplers) if args.samplers else [(recommended.sampler, recommended.steps)]
    try:
        guidance_scales = [float(g) for g in args.guidance.split(",")] if args.guidance else [recommended.guidance_scale]
    except ValueError:
        p.error(f"--guidance takes numbers like 1,2,3, not {args.guidance!r}")
    batch_size = max(args.per_digit, args.batch_size // args.per_digit * args.per_digit)
    guidance_intervals = [cli.guidance_interval(pipeline, parsed) for parsed in args.guidance_interval or [None]]
    cli.check_sweep(p, pipeline, samplers, guidance_scales, args.seed, guidance_intervals)

    classifiers = [load_classifier(path, pipeline.device) for path in args.classifiers]
    if len({classifier.architecture for classifier in classifiers}) < len(classifiers):
        p.error("--classifiers must be of different architectures: each judges under its architecture's name")
    if args.when_decided:
        results = [when_decided(pipeline, classifiers[0], sampler, steps, guidance_scale, args.per_digit, args.seed,
                                batch_size) for sampler, steps in samplers for guidance_scale in guidance_scales]
        write_report(args, results, "\n".join(decided_table(r) for r in results))
        return
    judges = judges_of(classifiers, args.data_dir, args.per_digit, args.seed)

    results = []
    for (sampler, steps), guidance_scale, interval in itertools.product(samplers, guidance_scales, guidance_intervals):
        result = evaluate(pipeline, judges, sampler, steps, guidance_scale, interval, args.per_digit, args.seed, batch_size)
        print(json.dumps(result), flush=True)
        results.append(result)
    write_report(args, results, markdown_table(results))


def write_report(args, results: list[dict], table: str) -> None:
    """Print the table; write the JSON to --out and the table to --table, where given."""
    report = {"weights": args.weights, "per_digit": args.per_digit, "seed": args.seed, "results": results}
    if args.out:
        with atomic_write(args.out) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if args.table:
        with atomic_write(args.table) as tmp:
            tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.evaluate")
