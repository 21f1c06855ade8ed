import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion import (
    NoiseSchedule,
    Pipeline,
    SamplingConfig,
    ScheduleConfig,
    UNet,
    UNetConfig,
    media,
)
from diffusion.data import load_mnist

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist-diffusion.safetensors"
TINY_UNET = UNetConfig(channels=(8, 16), embedding_dim=16, norm_groups=4)


def library_image(pipe: Pipeline, digits: list[int], **settings) -> np.ndarray:
    """What the library gives for these settings, laid out and upscaled as the app's PNG."""
    return media.enlarge(media.sample_grid(media.to_uint8(pipe.generate(digits, **settings)), len(digits)),
                         media.ANIMATION_SIZE)


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path | None = None, timeout: float = 120) -> None:
    """Wait until `url` answers; fail, with the app's output from `log`, if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text() if log else ""
            pytest.fail(f"the app exited with status {process.returncode} before serving:\n{output}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail(f"the app did not serve {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def served_app(tmp_path_factory) -> str:
    """`python app.py` started as a user starts it, on a free port; yields its URL. Its output goes
    to a file: a pipe nobody reads would stall the app once full (each refused request logs)."""
    port = free_port()
    log = tmp_path_factory.mktemp("served-app") / "app.log"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"], cwd=ROOT,
                                   stdout=output, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    wait_until_serving(url, process, log)
    yield url
    process.terminate()
    process.wait(timeout=30)
