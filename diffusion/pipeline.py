"""The pipeline: model + noise schedule + device, from one weights file to images.

    pipe = Pipeline.load()                                                 # the shipped weights, best device
    images = pipe.generate(digits=[3, 7], samples_per_digit=4, seed=0)     # (8, 1, 28, 28) in [-1, 1]
    for step in pipe.sample_steps(digits=[3], seed=0): ...                 # stream the denoising
    x_t, x0 = pipe.denoise_in_one_step(images, digits=[3], timestep=500)  # the forward process and back

A server that samples for many requests at once loads it with `shared=True`: threads that sample
at the same time then share the model's forward passes (batching.py).
"""

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from .batching import SharedModel
from .io import WEIGHTS_DIR, WeightsError, load_safetensors, load_state, save_safetensors
from .samplers import SAMPLERS, Step, classifier_free_guidance, final_image, predict_x0, with_known_pixels
from .schedule import NoiseSchedule, ScheduleConfig
from .unet import UNet, UNetConfig

DEFAULT_WEIGHTS = WEIGHTS_DIR / "mnist-diffusion.safetensors"
MAX_SEED = 2**63 - 1
MAX_GUIDANCE_SCALE = 100.0
REQUIRED_METADATA = ("unet_config", "schedule_config", "sampling_config", "training")


@dataclass(frozen=True)
class SamplingConfig:
    """The settings a weights file recommends; `generate` uses them for what it is not told."""

    sampler: str = "dpmpp"
    steps: int = 6
    guidance_scale: float = 1.5
    # The timesteps (low, high) where guidance above 1 applies, elsewhere plain conditional
    # (samplers.classifier_free_guidance); None: every timestep.
    guidance_interval: tuple[int, int] | None = None
    # Timesteps from T-1 down fitted to these weights (diffusion/tune.py), stretched to any step
    # count by NoiseSchedule.timesteps; None: evenly spaced.
    timesteps: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("guidance_interval", "timesteps"):  # lists when read from a weights file's JSON
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))


def is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SettingError(ValueError):
    """A setting the pipeline cannot sample with. `name` is the parameter, so that a command line
    or an API can report it under its own name; the message says what is allowed."""

    def __init__(self, name: str, allowed: str, value):
        super().__init__(f"{name} must be {allowed}, not {value!r}")
        self.name, self.allowed, self.value = name, allowed, value


def available_devices() -> list[str]:
    """The devices this machine can run on, best first: CUDA, then Apple MPS, then the CPU."""
    cuda = ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return cuda + (["mps"] if torch.backends.mps.is_available() else []) + ["cpu"]


def best_device() -> torch.device:
    return torch.device(available_devices()[0])


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """The named device ("cpu", "cuda", "cuda:1", "mps"), or the best one when None. Raises
    SettingError naming the devices this machine has, rather than failing at the first tensor."""
    if name is None:
        return best_device()
    available = available_devices()
    if str(name) not in available:
        raise SettingError("device", f"one this machine has ({', '.join(available)})", str(name))
    return torch.device(name)


def save_weights(path: str | Path, model: UNet, schedule_config: ScheduleConfig,
                 sampling_config: SamplingConfig, training: dict) -> None:
    """One file holds all that loading needs: weights, configs and how they were trained."""
    metadata = {
        "unet_config": asdict(model.config),
        "schedule_config": asdict(schedule_config),
        "sampling_config": asdict(sampling_config),
        "training": training,
    }
    save_safetensors(path, model.state_dict(), metadata)


class Pipeline:
    def __init__(self, model: UNet, schedule: NoiseSchedule, sampling_config: SamplingConfig,
                 metadata: dict | None = None, shared: bool = False):
        self.model = model.eval()
        self.schedule = schedule
        self.sampling_config = sampling_config
        self.metadata = metadata or {}
        self.device = next(model.parameters()).device
        # What the samplers call for noise predictions: the model itself, or with shared=True a
        # SharedModel, through which threads sampling at the same time share forward passes.
        self.denoiser = SharedModel(self.model) if shared else self.model

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device | None = None,
             shared: bool = False) -> "Pipeline":
        """Load a weights file written by train.py (by default the shipped one) onto `device` (by
        default the best available); raises WeightsError or SettingError with a clear message.
        shared=True: for a server, forward passes shared between threads (see Pipeline.__init__)."""
        device = pick_device(device)
        if shared:  # only the model thread may compute on several cores, so this one stops before the work below
            torch.set_num_threads(1)
        tensors, metadata = load_safetensors(path, REQUIRED_METADATA, missing_hint=(
            "; the repository ships weights/mnist-diffusion.safetensors, or train weights with `python train.py`"))
        try:
            unet_config = UNetConfig(**metadata["unet_config"])
            schedule_config = ScheduleConfig(**metadata["schedule_config"])
            sampling_config = SamplingConfig(**metadata["sampling_config"])
            fitted = sampling_config.timesteps
            if fitted is not None and not (fitted[0] == schedule_config.num_timesteps - 1 and fitted[-1] >= 0
                                           and all(a > b for a, b in zip(fitted, fitted[1:]))):
                raise ValueError(f"fitted timesteps must fall from {schedule_config.num_timesteps - 1} to 0 or more, "
                                 f"not {list(fitted)}")
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{path}: incompatible file, its configuration does not fit this code ({e})") from None
        model = UNet(unet_config)
        load_state(model, tensors, path)
        # channels_last lets the CPU's convolution kernels run about 1.4x faster here (see diffusion.bench).
        model = model.to(device, memory_format=torch.channels_last)
        return cls(model, NoiseSchedule(schedule_config), sampling_config, metadata, shared)

    @staticmethod
    def labels(digits: list[int], samples_per_digit: int = 1) -> torch.Tensor:
        """The label of each generated image: digits in order, each repeated samples_per_digit times."""
        return torch.tensor(digits, dtype=torch.int64).repeat_interleave(samples_per_digit)

    def validate(self, digits, guidance_scale, seed, sampler=None, steps=None, samples_per_digit=1,
                 guidance_interval=None) -> None:
        """Raise SettingError, saying what is allowed, for any setting this pipeline cannot sample with.
        sampler, steps and guidance_interval are checked when given."""
        num_classes, num_timesteps = self.model.config.num_classes, self.schedule.num_timesteps
        if not (isinstance(digits, (list, tuple)) and digits and all(is_integer(d) and 0 <= d < num_classes for d in digits)):
            raise SettingError("digits", f"a non-empty list of integers from 0 to {num_classes - 1}", digits)
        if not (is_number(guidance_scale) and math.isfinite(guidance_scale) and 0 <= guidance_scale <= MAX_GUIDANCE_SCALE):
            raise SettingError("guidance_scale", f"a number from 0 to {MAX_GUIDANCE_SCALE:g}", guidance_scale)
        if sampler is not None and not (isinstance(sampler, str) and sampler in SAMPLERS):
            raise SettingError("sampler", f"one of {', '.join(SAMPLERS)}", sampler)
        if steps is not None and not (is_integer(steps) and 1 <= steps <= num_timesteps):
            raise SettingError("steps", f"an integer from 1 to {num_timesteps}", steps)
        if guidance_interval is not None and not (
                isinstance(guidance_interval, (list, tuple)) and len(guidance_interval) == 2
                and all(is_integer(t) for t in guidance_interval)
                and 0 <= guidance_interval[0] <= guidance_interval[1] < num_timesteps):
            raise SettingError("guidance_interval", f"two timesteps (low, high), 0 <= low <= high <= {num_timesteps - 1}",
                               guidance_interval)
        if not (is_integer(seed) and 0 <= seed <= MAX_SEED):
            raise SettingError("seed", "an integer from 0 to 2^63-1", seed)
        if not (is_integer(samples_per_digit) and samples_per_digit >= 1):
            raise SettingError("samples_per_digit", "a positive integer", samples_per_digit)

    def settings(self, guidance_scale: float | None, sampler: str | None, steps: int | None,
                 guidance_interval: tuple[int, int] | None = None) -> SamplingConfig:
        """The settings given, with the weights' recommended SamplingConfig for those left out (None)."""
        given = {"guidance_scale": guidance_scale, "sampler": sampler, "steps": steps,
                 "guidance_interval": guidance_interval}
        return replace(self.sampling_config, **{name: value for name, value in given.items() if value is not None})

    def timesteps(self, steps: int) -> list[int]:
        """The timesteps of a run from pure noise in `steps` steps: along the fitted schedule, if the
        weights recommend one, else evenly spaced."""
        return self.schedule.timesteps(steps, fitted=self.sampling_config.timesteps)

    @property
    def all_timesteps(self) -> tuple[int, int]:
        """The guidance_interval that guides at every step."""
        return (0, self.schedule.num_timesteps - 1)

    def starting_noise(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """x_T ~ N(0, I) for count images, drawn from generator."""
        config = self.model.config
        shape = (count, config.image_channels, config.image_size, config.image_size)
        return torch.randn(shape, generator=generator, device=self.device)

    @torch.inference_mode()
    def sample_steps(self, digits: list[int], guidance_scale: float | None = None, sampler: str | None = None,
                     steps: int | None = None, seed: int = 0, samples_per_digit: int = 1,
                     guidance_interval: tuple[int, int] | None = None) -> Iterator[Step]:
        """Yield every denoising step; the last Step's x is the final batch of images.

        Unset options take the weights' recommended SamplingConfig (guidance_interval=all_timesteps
        guides at every step). The same seed, settings and device give the same images.
        """
        s = self.settings(guidance_scale, sampler, steps, guidance_interval)
        self.validate(digits, s.guidance_scale, seed, s.sampler, s.steps, samples_per_digit, s.guidance_interval)
        labels = self.labels(digits, samples_per_digit).to(self.device)
        generator = torch.Generator(self.device).manual_seed(seed)
        x = self.starting_noise(len(labels), generator)
        yield from self.denoise(x, labels, s.guidance_scale, s.sampler, self.timesteps(s.steps), generator,
                                guidance_interval=s.guidance_interval)

    @torch.inference_mode()
    def denoise(self, x: torch.Tensor, labels: torch.Tensor, guidance_scale: float, sampler: str,
                timesteps: list[int], generator: torch.Generator | None = None,
                weights: torch.Tensor | None = None, known: tuple[torch.Tensor, torch.Tensor] | None = None,
                guidance_interval: tuple[int, int] | None = None) -> Iterator[Step]:
        """The sampler's steps from x at timesteps[0] towards labels, with settings already checked:
        what sample_steps, the morphs (morph.py) and the edits (edit.py) share. labels, weights and
        guidance_interval (None: every step) as classifier_free_guidance; known = (images, keep) for
        inpainting, as with_known_pixels."""
        eps_fn = classifier_free_guidance(self.denoiser, labels.to(self.device), float(guidance_scale),
                                          self.model.config.null_label, None if weights is None else weights.to(self.device),
                                          guidance_interval)
        if known is not None:
            eps_fn = with_known_pixels(eps_fn, self.schedule, *known)
        yield from SAMPLERS[sampler](eps_fn, x, self.schedule, timesteps, generator)

    @torch.inference_mode()
    def denoise_in_one_step(self, images: torch.Tensor, digits: list[int], timestep: int, seed: int = 0,
                            guidance_scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise clean images (N, C, H, W) in [-1, 1] straight to `timestep` with the closed form
        q(x_t | x_0) (Ho et al. eq. 4), then estimate x_0 back from x_t with one model call.

        Returns (x_t, x0_estimate); digits are the images' labels, one per image.
        """
        settings = self.settings(guidance_scale, None, None)
        self.validate(digits, settings.guidance_scale, seed)
        if not (is_integer(timestep) and 0 <= timestep < self.schedule.num_timesteps):
            raise SettingError("timestep", f"an integer from 0 to {self.schedule.num_timesteps - 1}", timestep)
        if len(digits) != len(images):
            raise ValueError(f"one digit per image: got {len(digits)} digits for {len(images)} images")
        images = images.to(self.device)
        labels = self.labels(digits).to(self.device)
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn(images.shape, generator=generator, device=self.device)
        x_t = self.schedule.q_sample(images, torch.full_like(labels, timestep), noise)
        eps_fn = classifier_free_guidance(self.denoiser, labels, float(settings.guidance_scale),
                                          self.model.config.null_label, guidance_interval=settings.guidance_interval)
        alpha_bar = self.schedule.alphas_cumprod[timestep].item()
        return x_t, predict_x0(x_t, eps_fn(x_t, timestep), alpha_bar)

    def generate(self, digits: list[int], **options) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1], N = len(digits) * samples_per_digit; options as sample_steps."""
        return final_image(self.sample_steps(digits, **options))
