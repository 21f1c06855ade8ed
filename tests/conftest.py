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
    return media.enlarge(media.sample_grid(media.to_uint8(pipe.generate(pipe.settings(digits, **settings))), len(digits)),
                         media.ANIMATION_SIZE)


def generate_handlers(blocks):
    """The Generate tab's handlers (webapp.generate.Generate, with the runs under way) in a built app."""
    return next(fn.fn.__self__ for fn in blocks.fns.values() if fn.api_name == "generate")


def record_labels(model: torch.nn.Module):
    """(passes, hook): each forward pass's labels are appended to passes, a list a pass, for rows_of."""
    passes = []
    return passes, model.register_forward_hook(lambda module, inputs, output: passes.append(inputs[2].tolist()))


def rows_of(passes: list[list[int]], digit: int) -> int:
    """How many rows of the recorded forward passes were asked for with this digit's label: one a
    step for a request of one digit (its unguided row, if guided, carries the null label)."""
    return sum(labels.count(digit) for labels in list(passes))


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


def wait_until(condition, what: str, timeout: float = 120, poll_s: float = 0.02) -> None:
    """Wait until condition() is true. The deadline only bounds a hang, however busy the machine:
    it decides no outcome, and on expiry the test fails saying what never happened. The one
    place in the suite that sleeps or reads the time (test_suite_rules.py holds it to that)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll_s)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path | None = None, timeout: float = 120) -> None:
    """Wait until `url` answers; fail, with the app's output from `log`, if it exits or takes too long."""

    def serving() -> bool:
        if process.poll() is not None:
            output = log.read_text() if log else ""
            pytest.fail(f"the app exited with status {process.returncode} before serving:\n{output}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except OSError:
            return False

    try:
        wait_until(serving, f"the app serving {url}", timeout, poll_s=0.5)
    except BaseException:  # pytest's failures are BaseExceptions
        process.kill()
        raise


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
