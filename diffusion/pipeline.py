"""The pipeline: model + noise schedule + device, from one weights file to images.

    pipe = Pipeline.load()                                   # the shipped weights, best device
    settings = pipe.settings([3, 7], samples_per_digit=4, seed=0)
    images = pipe.generate(settings)                         # (8, 1, 28, 28) in [-1, 1]
    for step in pipe.sample_steps(settings): ...             # stream the denoising: len() steps
    x_t, x0 = pipe.denoise_in_one_step(images, settings, timestep=500)  # the forward process and back

A server that samples for many requests at once loads it with `shared=True`: threads that sample
at the same time then share the model's forward passes (batching.py).
"""

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from .batching import RecentForwardPasses, SharedModel
from .io import WEIGHTS_DIR, WeightsError, load_safetensors, load_state, save_safetensors
from .samplers import SAMPLERS, EpsFn, Steps, classifier_free_guidance, final_image, predict_x0
from .schedule import NoiseSchedule, ScheduleConfig
from .settings import MAX_GUIDANCE_SCALE, Limits, SettingError, Settings, check, is_integer
from .unet import UNet, UNetConfig

DEFAULT_WEIGHTS = WEIGHTS_DIR / "mnist-diffusion.safetensors"
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
    # A student's (UNetConfig.guidance_input): pairs (scale, the input that acts as it), rising from
    # (1, 1), measured on its teacher's guidance line (diffusion/tune.py --teacher). The pipeline tells
    # the student the input, so that a guidance scale means to a user what it means with the teacher.
    # None: the scale is told as it is.
    guidance_inputs: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self):
        for name in ("guidance_interval", "timesteps"):  # lists when read from a weights file's JSON
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.guidance_inputs is not None:
            object.__setattr__(self, "guidance_inputs", tuple(tuple(pair) for pair in self.guidance_inputs))

    def check(self, num_timesteps: int, student: bool) -> None:
        """Raises ValueError if the fitted timesteps or a student's inputs cannot be used."""
        fitted = self.timesteps
        if fitted is not None and not (fitted[0] == num_timesteps - 1 and fitted[-1] >= 0
                                       and all(a > b for a, b in zip(fitted, fitted[1:]))):
            raise ValueError(f"fitted timesteps must fall from {num_timesteps - 1} to 0 or more, not {list(fitted)}")
        pairs = self.guidance_inputs
        if pairs is not None:
            rising = all(len(pair) == 2 for pair in pairs) and all(
                scale < next_scale and given < next_given for (scale, given), (next_scale, next_given) in zip(pairs, pairs[1:]))
            if not (student and pairs[0] == (1, 1) and rising):
                raise ValueError(f"guidance_inputs must be a student's pairs (scale, input) rising from (1, 1), not {pairs}")
            if self.guidance_scale > pairs[-1][0]:
                raise ValueError(f"the recommended guidance {self.guidance_scale:g} is more than the student follows "
                                 f"(at most {pairs[-1][0]:g})")


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
                 sampling_config: SamplingConfig, training: dict, dtype: torch.dtype = torch.float32) -> None:
    """One file holds all that loading needs: weights, configs and how they were trained. Stored as
    `dtype` (float16 halves the file); loading makes them float32 again."""
    metadata = {
        "unet_config": asdict(model.config),
        "schedule_config": asdict(schedule_config),
        "sampling_config": asdict(sampling_config),
        "training": training,
    }
    save_safetensors(path, {name: t.to(dtype) if t.is_floating_point() else t
                                  for name, t in model.state_dict().items()}, metadata)


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
            sampling_config.check(schedule_config.num_timesteps, unet_config.guidance_input > 0)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{path}: incompatible file, its configuration does not fit this code ({e})") from None
        model = UNet(unet_config)
        load_state(model, tensors, path)
        # channels_last lets the CPU's convolution kernels run about 1.4x faster here (see diffusion.bench).
        model = model.to(device, memory_format=torch.channels_last)
        return cls(model, NoiseSchedule(schedule_config), sampling_config, metadata, shared)

    def reusing_forward_passes(self, remembered: int = 64) -> "Pipeline":
        """This pipeline, answering the last `remembered` forward passes again from memory rather
        than with the model (batching.RecentForwardPasses): for live mode, where one change of
        guidance leaves the first steps as they were. Same images, same model."""
        reusing = copy.copy(self)
        reusing.denoiser = RecentForwardPasses(self.denoiser, remembered)
        return reusing

    def settings(self, digits, seed=0, guidance_scale=None, sampler=None, steps=None, samples_per_digit=1,
                 guidance_interval=None, limits: Limits = Limits()) -> Settings:
        """A request's Settings, checked (settings.check), with the weights' recommended
        SamplingConfig for the options left out (None). guidance_interval=all_timesteps guides at
        every step. Raises SettingError saying what is allowed."""
        recommended = self.sampling_config
        limits = replace(limits, max_guidance_scale=min(limits.max_guidance_scale, self.max_guidance_scale))
        values = {"digits": digits, "seed": seed, "sampler": recommended.sampler if sampler is None else sampler,
                  "steps": recommended.steps if steps is None else steps,
                  "guidance_scale": recommended.guidance_scale if guidance_scale is None else guidance_scale,
                  "guidance_interval": recommended.guidance_interval if guidance_interval is None else guidance_interval,
                  "samples_per_digit": samples_per_digit}
        check(values, self.model.config.num_classes, self.schedule.num_timesteps, limits)
        if values["guidance_interval"] is not None:
            values["guidance_interval"] = tuple(values["guidance_interval"])
        return Settings(**values | {"digits": tuple(digits), "guidance_scale": float(values["guidance_scale"])})

    @property
    def max_guidance_scale(self) -> float:
        """The largest guidance scale the model can follow: a student's, as far as what it was taught
        reaches (SamplingConfig.guidance_inputs); a teacher's, the library's limit."""
        if self.sampling_config.guidance_inputs:
            return self.sampling_config.guidance_inputs[-1][0]
        return self.model.config.guidance_input or MAX_GUIDANCE_SCALE

    def input_for(self, guidance_scale: float) -> float:
        """The scale to tell the model for a guidance scale: the same, but for a student with
        guidance_inputs, where a scale above 1 is told as the input measured to act as it (linear
        between the measured pairs)."""
        pairs = self.sampling_config.guidance_inputs
        if not pairs or guidance_scale <= 1:
            return guidance_scale
        for (scale, given), (next_scale, next_given) in zip(pairs, pairs[1:]):
            if guidance_scale <= next_scale:
                return given + (guidance_scale - scale) * (next_given - given) / (next_scale - scale)
        raise SettingError("guidance_scale", f"a number from 0 to {self.max_guidance_scale:g}", guidance_scale)

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

    def sample_steps(self, settings: Settings) -> Steps:
        """Every denoising step from pure noise; the last Step's x is the final batch of images.
        The same settings and device give the same images."""
        generator = torch.Generator(self.device).manual_seed(settings.seed)
        x = self.starting_noise(len(settings.labels), generator)
        return self.denoise(x, settings.labels, settings, self.timesteps(settings.steps), generator)

    def guided(self, labels: torch.Tensor, settings: Settings, weights: torch.Tensor | None = None) -> EpsFn:
        """The noise prediction towards labels (and weights) with the settings' guidance
        (samplers.classifier_free_guidance), in one evaluation per image if the model is a student."""
        config = self.model.config
        return classifier_free_guidance(self.denoiser, labels, self.input_for(settings.guidance_scale), config.null_label,
                                        weights, settings.guidance_interval, config.guidance_input > 0)

    def denoise(self, x: torch.Tensor, labels: torch.Tensor, settings: Settings, timesteps: list[int],
                generator: torch.Generator | None = None, weights: torch.Tensor | None = None,
                adjust: Callable[[EpsFn], EpsFn] | None = None) -> Steps:
        """The sampler's steps from x at timesteps[0] towards labels, with the settings' sampler and
        guidance: what sample_steps, the morphs (morph.py), the edits (edit.py) and the writing
        (write.py) share. labels and weights as classifier_free_guidance; adjust, if given, turns
        the guided noise prediction into another (inpainting's known pixels, a number's hand)."""
        eps_fn = self.guided(labels.to(self.device), settings, None if weights is None else weights.to(self.device))
        if adjust is not None:
            eps_fn = adjust(eps_fn)
        sampler = SAMPLERS[settings.sampler](eps_fn, x, self.schedule, timesteps, generator)
        return Steps(without_gradients(sampler), len(timesteps))

    @torch.inference_mode()
    def denoise_in_one_step(self, images: torch.Tensor, settings: Settings,
                            timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise clean images (N, C, H, W) in [-1, 1], one per label of settings, straight to
        `timestep` with the closed form q(x_t | x_0) (Ho et al. eq. 4), with noise from the
        settings' seed, then estimate x_0 back from x_t with one model call (the settings' guidance).

        Returns (x_t, x0_estimate).
        """
        if not (is_integer(timestep) and 0 <= timestep < self.schedule.num_timesteps):
            raise SettingError("timestep", f"an integer from 0 to {self.schedule.num_timesteps - 1}", timestep)
        labels = settings.labels.to(self.device)
        if len(labels) != len(images):
            raise ValueError(f"one digit per image: got {len(labels)} digits for {len(images)} images")
        images = images.to(self.device)
        generator = torch.Generator(self.device).manual_seed(settings.seed)
        noise = torch.randn(images.shape, generator=generator, device=self.device)
        x_t = self.schedule.q_sample(images, torch.full_like(labels, timestep), noise)
        eps_fn = self.guided(labels, settings)
        alpha_bar = self.schedule.alphas_cumprod[timestep].item()
        return x_t, predict_x0(x_t, eps_fn(x_t, timestep), alpha_bar)

    def generate(self, settings: Settings) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1], N = len(digits) * samples_per_digit."""
        return final_image(self.sample_steps(settings))


@torch.inference_mode()
def without_gradients(steps):
    """A sampler's steps, computed in inference mode (no autograd bookkeeping) as they are asked for."""
    yield from steps
