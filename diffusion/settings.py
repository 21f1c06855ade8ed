"""A request's settings as one checked value: what to make, and how.

    settings = pipe.settings([3, 7], seed=0, steps=20)    # the rest: what the weights recommend
    images = pipe.generate(settings)

`Pipeline.settings` fills in what is left out from the weights' SamplingConfig and calls `check`
below, the one place where settings are checked. Sampling, the edits (edit.py) and the morph
(morph.py) take a `Settings` and trust it. A caller that allows less than the library (the app:
guidance up to 10, a cap on the work of one request) passes its `Limits`; a command line or an
app reports a `SettingError` under its own name for the setting.
"""

import math
from dataclasses import dataclass

import torch

from .samplers import SAMPLER_NAMES, SAMPLERS

MAX_SEED = 2**63 - 1
MAX_GUIDANCE_SCALE = 100.0


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SettingError(ValueError):
    """A setting the pipeline cannot sample with. `name` is the parameter, so that a command line
    or an API can report it under its own name; the message says what is allowed."""

    def __init__(self, name: str, allowed: str, value, message: str | None = None):
        super().__init__(message or f"{name} must be {allowed}, not {value!r}")
        self.name, self.allowed, self.value = name, allowed, value


@dataclass(frozen=True)
class Limits:
    """How far a caller lets settings go: the library's own limits, or an app's narrower ones."""

    max_guidance_scale: float = MAX_GUIDANCE_SCALE
    max_samples_per_digit: int | None = None  # None: any number
    max_image_steps: int | None = None  # images x steps in one request; None: any number


@dataclass(frozen=True)
class Settings:
    """One request, complete and checked: made by Pipeline.settings."""

    digits: tuple[int, ...]
    seed: int
    sampler: str
    steps: int
    guidance_scale: float
    guidance_interval: tuple[int, int] | None  # where guidance above 1 applies; None: every timestep
    samples_per_digit: int = 1

    @property
    def labels(self) -> torch.Tensor:
        return labels_of(self.digits, self.samples_per_digit)

    @property
    def description(self) -> str:
        """For people: 'Digit 3 · DPM-Solver++, 9 steps · guidance 2.5 · seed 0 · 1 sample per digit'."""
        what = f"Digit {self.digits[0]}" if len(self.digits) == 1 else f"Digits {digit_list(self.digits)}"
        samples = f"{self.samples_per_digit} sample{'s' if self.samples_per_digit > 1 else ''} per digit"
        return (f"{what} · {SAMPLER_NAMES[self.sampler]}, {self.steps} steps · guidance {self.guidance_scale:g}"
                f" · seed {self.seed} · {samples}")

    @property
    def file_stem(self) -> str:
        """For files: 'mnist-digit-3_dpmpp-9-steps_guidance-2.5_seed-0_x1'."""
        what = f"digit-{self.digits[0]}" if len(self.digits) == 1 else f"digits-{digit_list(self.digits)}"
        return (f"mnist-{what}_{self.sampler}-{self.steps}-steps_guidance-{self.guidance_scale:g}_seed-{self.seed}"
                f"_x{self.samples_per_digit}")


def digit_list(digits: tuple[int, ...]) -> str:
    """'0-9' for all ten in order, else the digits joined: '3-7'."""
    return "0-9" if digits == tuple(range(10)) else "-".join(map(str, digits))


def labels_of(digits, samples_per_digit: int = 1) -> torch.Tensor:
    """The label of each generated image: digits in order, each repeated samples_per_digit times."""
    return torch.tensor(list(digits), dtype=torch.int64).repeat_interleave(samples_per_digit)


def check(values: dict, num_classes: int, num_timesteps: int, limits: Limits) -> None:
    """Raise SettingError, saying what is allowed, for the first of values (Settings' fields) that
    a model of num_classes classes and num_timesteps timesteps cannot sample with, within limits."""
    digits, steps, interval = values["digits"], values["steps"], values["guidance_interval"]
    if not (isinstance(digits, (list, tuple)) and digits and all(is_integer(d) and 0 <= d < num_classes for d in digits)):
        raise SettingError("digits", f"a non-empty list of integers from 0 to {num_classes - 1}", digits)
    guidance_scale = values["guidance_scale"]
    if not (is_number(guidance_scale) and math.isfinite(guidance_scale) and 0 <= guidance_scale <= limits.max_guidance_scale):
        raise SettingError("guidance_scale", f"a number from 0 to {limits.max_guidance_scale:g}", guidance_scale)
    if not (isinstance(values["sampler"], str) and values["sampler"] in SAMPLERS):
        raise SettingError("sampler", f"one of {', '.join(SAMPLERS)}", values["sampler"])
    if not (is_integer(steps) and 1 <= steps <= num_timesteps):
        raise SettingError("steps", f"an integer from 1 to {num_timesteps}", steps)
    if interval is not None and not (isinstance(interval, (list, tuple)) and len(interval) == 2
                                     and all(is_integer(t) for t in interval)
                                     and 0 <= interval[0] <= interval[1] < num_timesteps):
        raise SettingError("guidance_interval", f"two timesteps (low, high), 0 <= low <= high <= {num_timesteps - 1}",
                           interval)
    if not (is_integer(values["seed"]) and 0 <= values["seed"] <= MAX_SEED):
        raise SettingError("seed", "an integer from 0 to 2^63-1", values["seed"])
    check_amount(values["samples_per_digit"], len(digits) * steps, limits)


def check_amount(samples_per_digit, steps_per_sample: int, limits: Limits) -> None:
    """How many samples, and how much work in all: within the caller's limits."""
    most = limits.max_samples_per_digit
    if not (is_integer(samples_per_digit) and samples_per_digit >= 1):
        raise SettingError("samples_per_digit", "a positive integer", samples_per_digit)
    if most is not None and samples_per_digit > most:
        raise SettingError("samples_per_digit", f"an integer from 1 to {most}", samples_per_digit,
                           f"samples per digit go from 1 to {most}, not {samples_per_digit}")
    image_steps = samples_per_digit * steps_per_sample
    if limits.max_image_steps is not None and image_steps > limits.max_image_steps:
        raise SettingError("samples_per_digit", f"at most {limits.max_image_steps:,} image-steps in all", image_steps,
                           f"that is {image_steps:,} image-steps (images x steps); this demo allows "
                           f"{limits.max_image_steps:,}. Ask for fewer samples or steps.")
