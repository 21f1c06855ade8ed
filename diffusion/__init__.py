"""Class-conditional diffusion on MNIST: a U-Net, a noise schedule, samplers and a pipeline.

Read in this order: schedule.py, unet.py, samplers.py, settings.py, pipeline.py; then train.py at
the top level, with progress.py for what a run shows as it learns and the snapshots it keeps;
edit.py, morph.py and write.py (with style.py) for what else the denoiser does, inside.py for a
look inside it, media.py for its pictures, classifier.py and measure.py to read and measure them;
batching.py when you serve many requests at once.
"""

from .io import WeightsError
from .pipeline import DEFAULT_WEIGHTS, Pipeline, SamplingConfig, best_device, pick_device
from .samplers import SAMPLERS, STEP_RANGES, Step, Steps, classifier_free_guidance
from .schedule import NoiseSchedule, ScheduleConfig
from .settings import Limits, SettingError, Settings
from .unet import UNet, UNetConfig

__all__ = ["DEFAULT_WEIGHTS", "Pipeline", "SamplingConfig", "Settings", "Limits", "SettingError", "best_device",
           "pick_device", "SAMPLERS", "STEP_RANGES", "Step", "Steps", "classifier_free_guidance", "NoiseSchedule",
           "ScheduleConfig", "UNet", "UNetConfig", "WeightsError"]
