import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion import (
    NoiseSchedule,
    Pipeline,
    SamplingConfig,
    ScheduleConfig,
    UNet,
    UNetConfig,
)
from diffusion.data import load_mnist

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist-diffusion.safetensors"
TINY_UNET = UNetConfig(channels=(8, 16), embedding_dim=16, norm_groups=4)


def run_script(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def mnist_root() -> str:
    """$MNIST_ROOT, or data/ where torchvision downloads MNIST if it is missing; fails clearly if neither works."""
    root = os.environ.get("MNIST_ROOT", str(ROOT / "data"))
    try:
        load_mnist(root, train=False)
    except FileNotFoundError as e:
        pytest.fail(f"these tests need MNIST: {e}")
    return root


@pytest.fixture
def tiny_pipeline() -> Pipeline:
    """A randomly initialised, very small model: fast, for tests of mechanics rather than quality."""
    torch.manual_seed(0)
    return Pipeline(UNet(TINY_UNET), NoiseSchedule(ScheduleConfig(num_timesteps=100)), SamplingConfig(steps=4))


@pytest.fixture(scope="session")
def shipped_pipeline() -> Pipeline:
    return Pipeline.load(SHIPPED_WEIGHTS, device="cpu")
