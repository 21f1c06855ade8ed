"""Samplers: turn pure noise into images, one step at a time.

The contract every sampler shares (so callers never special-case one):

    sampler(eps_fn, x, schedule, timesteps, generator) -> iterator of Step

- `eps_fn(x, t)` predicts the noise in x at integer timestep t (for example
  `classifier_free_guidance(...)` below);
- `x` is the starting noise x_T ~ N(0, I), of any batch size;
- `timesteps` is a decreasing list of timesteps, e.g. `schedule.timesteps(20)`;
- `generator` seeds any fresh noise a stochastic sampler draws.

Each step yields a `Step`; the last one's `x` is the final image. All the maths is
float32 (Apple MPS has no float64), and scalars are Python floats computed once.

Notation: alpha_bar = alphas_cumprod[t], for the step's timestep t, and
alpha_bar_next for the timestep the step moves to (1.0, clean, after the last step).
Predictions of the clean image are clipped to the data range [-1, 1].
"""

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from .schedule import NoiseSchedule

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class Step:
    index: int  # 0 .. len(timesteps) - 1
    timestep: int  # the timestep the model saw at this step
    x_t: torch.Tensor  # the noisy sample the model saw at this step (the first step's is x_T)
    x: torch.Tensor  # the sample after this step; after the last step, the final image
    x0: torch.Tensor  # the model's estimate of the clean image, made from x_t
    alpha_bar: float  # the noise level of x_t ...
    alpha_bar_next: float  # ... and of x (1.0, clean, after the last step)


class Steps:
    """A run's steps as they come, knowing how many there will be: what the pipeline, the edits
    and the morph return, so that an animation or a progress count needs no count of its own."""

    def __init__(self, steps: Iterator[Step], count: int):
        self.steps, self.count = steps, count

    def __iter__(self) -> Iterator[Step]:
        return self.steps

    def __len__(self) -> int:
        return self.count


def final_image(steps: Iterable[Step]) -> torch.Tensor:
    """Run a sampler's steps (or an edit's, a morph's) to the end: the last Step's x, the final image."""
    for step in steps:
        pass
    return step.x


def classifier_free_guidance(model, labels: torch.Tensor, guidance_scale: float, null_label: int,
                             weights: torch.Tensor | None = None, guidance_interval: tuple[int, int] | None = None,
                             distilled: bool = False) -> EpsFn:
    """eps = eps_uncond + w * (eps_cond - eps_uncond)  (Ho & Salimans 2022, eq. 6).

    Convention: w = 0 is unconditional, w = 1 is plain conditional (no guidance), w > 1
    pushes samples further towards their class. All predictions come from one batched
    forward pass; at w = 0 or w = 1 only those that are needed are computed.

    guidance_interval = (low, high): push (w > 1) only at timesteps low <= t <= high, and take
    the plain conditional prediction elsewhere, one network evaluation per image instead of two
    (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"). Pushing while x_t is
    almost pure noise makes every sample of a class alike; near the end it only thickens
    strokes. Scales up to 1 (towards unconditional) apply at every step: 0 stays unconditional.

    labels (N,) gives each image its class. To guide towards a mix of classes (the morph
    between two digits), labels (N, K) gives each image K classes and weights (N, K), summing
    to 1 per image, their shares: eps_cond = sum_k weights_k eps_cond_k, the weighted
    composition of Liu et al. 2022 (eq. 10), which for one class is plain eq. 6.

    distilled: the model is a student that learned guidance (Meng et al. 2023, "On Distillation of
    Guided Diffusion Models", eq. 6 of stage one): model(x, t, c, w) predicts eps_uncond + w (eps_cond -
    eps_uncond) itself, in one evaluation per image instead of two. For K classes that is K
    evaluations, summed with the weights: since they sum to 1, that is the same composition.
    """
    if labels.dim() == 1:
        labels, weights = labels[:, None], torch.ones(len(labels), 1, device=labels.device)
    null_labels = torch.full_like(labels[:, 0], null_label)
    if guidance_scale == 0.0:
        return lambda x, t: model(x, torch.full_like(null_labels, t), null_labels)

    num_classes = labels.shape[1]
    low, high = guidance_interval or (0, math.inf)
    # One row per image and class (class-major), then one unconditional row per image.
    all_labels = torch.cat([labels.T.reshape(-1), null_labels])
    shares = weights.T.reshape(num_classes, -1, 1, 1, 1).float()

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        guided = guidance_scale != 1.0 and (guidance_scale < 1.0 or low <= t <= high)
        # A student makes the guided prediction itself, told the scale: it needs no unconditional rows.
        with_uncond = guided and not distilled
        copies = num_classes + with_uncond  # the conditional rows, and the unconditional ones where guided
        rows = all_labels[:copies * len(x)]
        scales = (torch.full(rows.shape, guidance_scale, device=x.device),) if guided and distilled else ()
        eps = model(x.repeat(copies, 1, 1, 1), torch.full_like(rows, t), rows, *scales).unflatten(0, (copies, len(x)))
        eps_cond = (shares * eps[:num_classes]).sum(0)
        if not with_uncond:
            return eps_cond
        eps_uncond = eps[num_classes]
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    return eps_fn


def with_known_pixels(eps_fn: EpsFn, schedule: NoiseSchedule, known: torch.Tensor, keep: torch.Tensor) -> EpsFn:
    """Inpainting through the noise prediction: where keep is True, the clean image is known, so
    the noise in x_t there is not guessed but solved for, eps = (x_t - sqrt(alpha_bar) x0) /
    sqrt(1 - alpha_bar) (Ho et al. eq. 4). Any sampler then moves the kept pixels along their own
    noising path, as q(x_t | x_0) would (the "replacement" of Song et al. 2021, App. I.2, with
    the noise drawn once), and lands them on the known values; the model sees them at every step,
    so it fills in the rest to match."""
    def eps_fn_knowing(x: torch.Tensor, t: int) -> torch.Tensor:
        alpha_bar = schedule.alphas_cumprod[t].item()
        eps_known = (x - math.sqrt(alpha_bar) * known) / math.sqrt(1 - alpha_bar)
        return torch.where(keep, eps_known, eps_fn(x, t))

    return eps_fn_knowing


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """Solve x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps for x0 (Ho et al. eq. 4), clipped."""
    return ((x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)).clamp(-1, 1)


def ddim_path(step: Step, alpha_bar: float) -> torch.Tensor:
    """The sample at noise level alpha_bar on the deterministic DDIM path through this step's
    own prediction (Song et al. 2021, eq. 12 with eta = 0): x0 and the noise that matches it.

    From step.alpha_bar (giving x_t back) to step.alpha_bar_next, this is what the model
    predicted would lie between the step's two samples; for DDIM it ends exactly at step.x.
    Animations use it for the frames in between two steps.
    """
    eps = (step.x_t - math.sqrt(step.alpha_bar) * step.x0) / math.sqrt(1 - step.alpha_bar)
    return math.sqrt(alpha_bar) * step.x0 + math.sqrt(1 - alpha_bar) * eps


def _alpha_bars(schedule: NoiseSchedule, timesteps: list[int]) -> list[tuple[float, float]]:
    """(alpha_bar, alpha_bar_next) for each step."""
    alpha_bars = schedule.alphas_cumprod[timesteps].tolist()
    return list(zip(alpha_bars, alpha_bars[1:] + [1.0]))


def ddpm(eps_fn: EpsFn, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int],
         generator: torch.Generator | None = None) -> Iterator[Step]:
    """Ancestral sampling (Ho et al. 2020, Alg. 2) through the posterior q(x_{t-1} | x_t, x0).

    On a subsequence of timesteps the betas are respaced (Nichol & Dhariwal 2021, eq. 19),
    so any step count works; with all T timesteps this is exactly the original.
    """
    for i, (t, (alpha_bar, alpha_bar_next)) in enumerate(zip(timesteps, _alpha_bars(schedule, timesteps))):
        x_t = x
        x0 = predict_x0(x_t, eps_fn(x_t, t), alpha_bar)
        beta = 1 - alpha_bar / alpha_bar_next  # respaced beta_t
        # Posterior mean and variance, Ho et al. eq. 7.
        mean = (math.sqrt(alpha_bar_next) * beta * x0 + math.sqrt(1 - beta) * (1 - alpha_bar_next) * x_t) / (1 - alpha_bar)
        variance = beta * (1 - alpha_bar_next) / (1 - alpha_bar)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        x = mean + math.sqrt(variance) * noise  # Alg. 2, line 4
        yield Step(i, t, x_t, x, x0, alpha_bar, alpha_bar_next)


def ddim(eps_fn: EpsFn, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int],
         generator: torch.Generator | None = None, eta: float = 0.0) -> Iterator[Step]:
    """DDIM (Song et al. 2021, eq. 12): eta = 0 is deterministic, eta = 1 matches DDPM's variance."""
    for i, (t, (alpha_bar, alpha_bar_next)) in enumerate(zip(timesteps, _alpha_bars(schedule, timesteps))):
        x_t = x
        x0 = predict_x0(x_t, eps_fn(x_t, t), alpha_bar)
        eps = (x_t - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)  # the noise that matches the clipped x0
        sigma = eta * math.sqrt((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next))  # eq. 16
        x = math.sqrt(alpha_bar_next) * x0 + math.sqrt(1 - alpha_bar_next - sigma**2) * eps  # eq. 12
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        yield Step(i, t, x_t, x, x0, alpha_bar, alpha_bar_next)


def dpmpp_2m(eps_fn: EpsFn, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int],
             generator: torch.Generator | None = None) -> Iterator[Step]:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): a second-order multistep solver of the
    diffusion ODE in lambda = log(alpha / sigma), reusing the previous step's x0 estimate.

    The first step is first order (no history yet) and the last step lands on the clean
    image (sigma = 0), where the update is simply x = x0. Deterministic: `generator` is unused.
    """
    previous_x0, previous_h = None, None
    for i, (t, (alpha_bar, alpha_bar_next)) in enumerate(zip(timesteps, _alpha_bars(schedule, timesteps))):
        x_t = x
        x0 = predict_x0(x_t, eps_fn(x_t, t), alpha_bar)
        if alpha_bar_next == 1.0:
            x = x0
        else:
            sigma, sigma_next = math.sqrt(1 - alpha_bar), math.sqrt(1 - alpha_bar_next)
            alpha_next = math.sqrt(alpha_bar_next)
            h = math.log(alpha_next / sigma_next) - math.log(math.sqrt(alpha_bar) / sigma)
            if previous_x0 is None:
                d = x0
            else:
                r = previous_h / h
                d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * previous_x0
            x = (sigma_next / sigma) * x_t - alpha_next * math.expm1(-h) * d
            previous_x0, previous_h = x0, h
        yield Step(i, t, x_t, x, x0, alpha_bar, alpha_bar_next)


SAMPLERS = {"ddpm": ddpm, "ddim": ddim, "dpmpp": dpmpp_2m}
SAMPLER_NAMES = {"dpmpp": "DPM-Solver++", "ddim": "DDIM", "ddpm": "DDPM"}  # as people know them

# The step counts each sampler is meant for, (fewest, most, usual): the app's step slider
# offers this range, and diffusion.bench measures the ends of it.
STEP_RANGES = {"ddpm": (10, 1000, 1000), "ddim": (1, 250, 50), "dpmpp": (1, 50, 10)}
