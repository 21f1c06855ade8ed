"""Class-conditional diffusion on MNIST: a U-Net, a noise schedule, samplers and a pipeline.

Read in this order: schedule.py, unet.py, samplers.py, pipeline.py; then train.py at the top level;
morph.py to walk between digits, classifier.py to read what a step's guess shows; batching.py
when you serve many requests at once.
"""

from .io import WeightsError
from .pipeline import DEFAULT_WEIGHTS, Pipeline, SamplingConfig, SettingError, best_device, pick_device
from .samplers import SAMPLERS, STEP_RANGES, Step, classifier_free_guidance
from .schedule import NoiseSchedule, ScheduleConfig
from .unet import UNet, UNetConfig

__all__ = ["DEFAULT_WEIGHTS", "Pipeline", "SamplingConfig", "SettingError", "best_device", "pick_device", "SAMPLERS",
           "STEP_RANGES", "Step", "classifier_free_guidance", "NoiseSchedule", "ScheduleConfig", "UNet", "UNetConfig", "WeightsError"]
