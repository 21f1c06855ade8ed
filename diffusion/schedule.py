"""The noise schedule: how much signal is left at each of the T timesteps.

The forward process adds Gaussian noise in T small steps with variances beta_t.
Its closed form (Ho et al. 2020, eq. 4) is what training and sampling use:

    q(x_t | x_0) = N(sqrt(alphas_cumprod[t]) * x_0, (1 - alphas_cumprod[t]) * I)

where alphas_cumprod[t] = prod_{s<=t} (1 - beta_s) falls from about 1 (clean) to
about 0 (pure noise). `denoising_loss` is the training objective built on it.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ScheduleConfig:
    num_timesteps: int = 1000
    beta_schedule: str = "cosine"  # "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    beta_start: float = 1e-4  # linear only
    beta_end: float = 0.02  # linear only

    def __post_init__(self):
        if self.beta_schedule not in ("linear", "cosine"):
            raise ValueError(f"beta_schedule must be 'linear' or 'cosine', not {self.beta_schedule!r}")
        if self.num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, not {self.num_timesteps}")


def make_betas(config: ScheduleConfig) -> torch.Tensor:
    T = config.num_timesteps
    if config.beta_schedule == "linear":
        return torch.linspace(config.beta_start, config.beta_end, T, dtype=torch.float64)
    # Cosine: alphas_cumprod follows cos^2 (Nichol & Dhariwal 2021, eq. 17), with s = 0.008
    # and betas clipped at 0.999 so the last step stays finite.
    s = 0.008
    f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


class NoiseSchedule:
    """alphas_cumprod for every timestep, plus the forward process q(x_t | x_0)."""

    def __init__(self, config: ScheduleConfig = ScheduleConfig()):
        self.config = config
        self.num_timesteps = config.num_timesteps
        self.betas = make_betas(config)
        # Computed in float64 here, stored as float32: samplers stay in float32 (Apple MPS has no float64).
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0).float()
        self.betas = self.betas.float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean images x0 (B, C, H, W) to timesteps t (B,) in closed form (Ho et al. eq. 4)."""
        alpha_bar = self.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def timesteps(self, steps: int, start: int | None = None, fitted: tuple[int, ...] | None = None) -> list[int]:
        """`steps` timesteps from `start` (by default T-1) down, evenly spaced ("trailing": Lin et
        al. 2024, Table 2), or along a `fitted` schedule.

        The first step always starts from t = T-1, pure noise; "leading" spacing would start
        from a partly noised image that sampling never sees, and loses quality at few steps.
        An edit (edit.py) starts from a picture noised part of the way, at `start`.

        fitted: timesteps from T-1 down fitted to a model (diffusion/tune.py), for any step count:
        even spacing is a straight line from T-1 at step 0 to -1 (the clean image) after the last
        step, and a fitted schedule is the broken line through its own timesteps, read at `steps`
        even points. Where it is steeper than one timestep a step, timesteps stay distinct.
        """
        n = self.num_timesteps if start is None else start + 1
        if not 1 <= steps <= n:
            raise ValueError(f"steps must be between 1 and {n}, not {steps}")
        # The line runs through t + 1, so that even spacing is exactly round(n - i n / steps) - 1.
        knots = [n, 0] if fitted is None else [t + 1 for t in fitted] + [0]
        timesteps = []
        for i in range(steps):
            k, rest = divmod(i * (len(knots) - 1), steps)  # step i lies rest / steps of the way from knot k to k + 1
            t = round(knots[k] + rest * (knots[k + 1] - knots[k]) / steps) - 1
            # Below the previous one, and leaving room for the steps still to come.
            timesteps.append(max(min(t, timesteps[-1] - 1 if timesteps else n - 1), steps - 1 - i))
        return timesteps


def noised(schedule: NoiseSchedule, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
           label_dropout: float, null_label: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, t, noise, labels): clean images x0 noised to random timesteps t, and their labels with a
    share label_dropout made null_label."""
    t = torch.randint(0, schedule.num_timesteps, (len(labels),), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    dropped = torch.rand(len(labels), device=x0.device, generator=generator) < label_dropout
    return schedule.q_sample(x0, t, noise), t, noise, torch.where(dropped, null_label, labels)


def denoising_loss(predict_noise, schedule: NoiseSchedule, x0: torch.Tensor, labels: torch.Tensor,
                   generator: torch.Generator, label_dropout: float, null_label: int) -> torch.Tensor:
    """The simple loss (Ho et al. eq. 14): noise clean images x0 to random timesteps and
    score predict_noise(x_t, t, labels) against the noise. A share label_dropout of the labels
    becomes null_label, so the same model also learns the unconditional prediction that
    classifier-free guidance needs (Ho & Salimans 2022)."""
    x_t, t, noise, labels = noised(schedule, x0, labels, generator, label_dropout, null_label)
    return F.mse_loss(predict_noise(x_t, t, labels).float(), noise)


def distillation_loss(student, teacher, schedule: NoiseSchedule, x0: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator, label_dropout: float, null_label: int,
                      max_scale: float) -> torch.Tensor:
    """Guidance distilled into a student (Meng et al. 2023, "On Distillation of Guided Diffusion
    Models", stage one): at random timesteps and guidance scales w, score student(x_t, t, labels, w)
    against the teacher's classifier-free guided prediction eps_u + w (eps_c - eps_u), two of the
    teacher's evaluations in one batch. The scales are drawn as max_scale * u^2 (u uniform in
    [0, 1]): all of [0, max_scale], half of them below max_scale / 4, where guidance is used most.
    A share label_dropout of the labels is null_label, with the teacher's unconditional
    prediction as the target, so that the student keeps that too."""
    x_t, t, _, labels = noised(schedule, x0, labels, generator, label_dropout, null_label)
    scales = max_scale * torch.rand(len(labels), device=x0.device, generator=generator) ** 2
    with torch.no_grad():
        eps_cond, eps_uncond = teacher(x_t.repeat(2, 1, 1, 1), t.repeat(2),
                                       torch.cat([labels, torch.full_like(labels, null_label)])).chunk(2)
        target = eps_uncond + scales[:, None, None, None] * (eps_cond - eps_uncond)
    return F.mse_loss(student(x_t, t, labels, scales).float(), target.float())
