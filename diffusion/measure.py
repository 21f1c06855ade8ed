"""Measuring a model: how much it computes, how long it takes, and what a classifier reads in its
images. `evaluate`, `bench` and the app all measure with these.
"""

import math
import time
from dataclasses import replace
from typing import Iterator

import torch

from .classifier import class_probabilities, predict
from .pipeline import Pipeline
from .settings import Settings


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EvaluationCounter:
    """Counts the network's image-evaluations while in use: a forward hook on the model adds each
    call's batch size, so what is counted is what ran (two per guided step and image, one where
    guidance is off), whatever the sampler or the guidance did.

        with EvaluationCounter(pipeline.model) as counter:
            images = pipeline.generate(...)
        counter.images / len(images)   # evaluations per image
    """

    def __init__(self, model: torch.nn.Module):
        self.model, self.images = model, 0

    def __enter__(self) -> "EvaluationCounter":
        self.hook = self.model.register_forward_hook(self.count)
        return self

    def count(self, module, args, output) -> None:
        self.images += len(args[0])

    def __exit__(self, *exc) -> None:
        self.hook.remove()


def timed_runs(run, repeats: int, budget_s: float = math.inf) -> list[float]:
    """Seconds for each of up to `repeats` calls of run() (warm up first); no further run
    starts once it would take the total past budget_s."""
    times = []
    while len(times) < repeats and (not times or sum(times) + times[0] <= budget_s):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def time_generation(pipeline: Pipeline, settings: Settings, repeats: int, budget_s: float = math.inf) -> list[float]:
    """Seconds for each of up to `repeats` calls of pipeline.generate (see timed_runs), after a
    2-step warm-up call with the same batch, which sets up the kernels for that shape."""
    pipeline.generate(replace(settings, steps=2))

    def run():
        pipeline.generate(settings)
        synchronize(pipeline.device)

    return timed_runs(run, repeats, budget_s)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to features (Heusel et al. 2017)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix.
    eigenvalues, eigenvectors = torch.linalg.eigh(cov_a)
    sqrt_a = eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
    trace_sqrt = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt)


def confidence(classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """How sure the classifier is, on average, that each image is its label (0 to 1)."""
    return class_probabilities(classifier, images)[torch.arange(len(labels)), labels.cpu()].mean().item()


def variety(classifier, images: torch.Tensor) -> float:
    """How different samples are: the mean distance, over every pair, between their classifier
    features (as the Fréchet distance compares them). 0: all the same. Pixel distance misleads
    here: strong guidance thickens strokes, which adds pixel differences while the shapes grow alike."""
    features = predict(classifier, images)[1].double()
    pairs = torch.combinations(torch.arange(len(features)))
    return (features[pairs[:, 0]] - features[pairs[:, 1]]).norm(dim=1).mean().item()


def guidance_sweep(pipe: Pipeline, classifier, digits: list[int], seed: int, scales: tuple[float, ...],
                   samples_per_digit: int = 1) -> Iterator[tuple[Settings, torch.Tensor, float, float | None]]:
    """The same seed at each guidance scale, guided at every step as classifier-free guidance was
    first defined, one scale at a time: (its settings, its images, how sure the classifier is that
    they are the digits asked for, and for one digit their variety; between digits it says little)."""
    for guidance_scale in scales:
        settings = pipe.settings(digits, seed, guidance_scale, samples_per_digit=samples_per_digit,
                                 guidance_interval=pipe.all_timesteps)
        images = pipe.generate(settings)
        spread = variety(classifier, images) if len(digits) == 1 else None
        yield settings, images, confidence(classifier, images, settings.labels), spread


@torch.inference_mode()
def scales_acted(student: Pipeline, teacher: Pipeline, inputs: list[float], per_digit: int = 4,
                 seed: int = 0) -> list[float]:
    """The guidance scale a student (train.py --distill-from) acts as at each of its inputs w: its
    prediction at w placed on its teacher's guidance line eps_u + s (eps_c - eps_u) (Ho & Salimans
    2022, eq. 6) at the s nearest it, least squares; the median over per_digit of the teacher's
    images of each digit, noised to five timesteps across the interval where the student guides."""
    settings = teacher.settings(list(range(teacher.model.config.num_classes)), seed, samples_per_digit=per_digit)
    x0, labels = teacher.generate(settings), settings.labels.to(teacher.device)
    null_labels = torch.full_like(labels, teacher.model.config.null_label)
    low, high = student.sampling_config.guidance_interval or (100, 900)
    generator = torch.Generator(teacher.device).manual_seed(seed)
    acted = [[] for _ in inputs]
    for t in torch.linspace(low, high, 5).round().int().tolist():
        timesteps = torch.full_like(labels, t)
        x_t = teacher.schedule.q_sample(x0, timesteps, torch.randn(x0.shape, generator=generator, device=x0.device))
        eps_u = teacher.model(x_t, timesteps, null_labels).flatten(1)
        line = teacher.model(x_t, timesteps, labels).flatten(1) - eps_u
        for placed, w in zip(acted, inputs):
            eps = student.model(x_t, timesteps, labels, torch.full(labels.shape, float(w), device=x0.device))
            placed.append(((eps.flatten(1) - eps_u) * line).sum(1) / (line * line).sum(1))
    return [torch.cat(placed).median().item() for placed in acted]
