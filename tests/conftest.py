import contextlib
import io
import math
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

# `make test` runs the tests in a process per core (pytest-xdist's workers). Each worker gets its
# own Gradio folder, as separate servers would: Gradio deletes an app's files when the app closes,
# and uploads with the same bytes share one path there. Its compute threads wait for work asleep,
# not spinning: a spinning thread holds a core the other worker needs (the everyday suite took
# four times as long here). Both are read when Gradio and PyTorch are imported, so they are set first.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(tempfile.gettempdir()) / f"gradio-{worker}"))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch
from PIL import Image

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
HANG_S = 120  # the most any wait in the suite lasts: a deadline that only bounds a hang, however busy the machine
SHIPPED_WEIGHTS = ROOT / "weights" / "mnist-diffusion.safetensors"
STUDENT_WEIGHTS = ROOT / "weights" / "mnist-student.safetensors"  # guidance distilled into it (train.py --distill-from)
TINY_UNET = UNetConfig(channels=(8, 16), embedding_dim=16, norm_groups=4)
# The browser tests: Debian's Chromium, on a desktop and on a phone.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


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


def run_here(*args: str) -> subprocess.CompletedProcess:
    """`python <args>` (a script, or -m and a module) run in this process, its output captured: the
    command as a user runs it, without a new interpreter importing PyTorch again (3-4 s a run, 3 s
    more for a command that trains). What a script may change in the process is put back: the
    signal handlers (train.py's turn Ctrl-C into a flag) and PyTorch's random state."""
    stdout, stderr, argv, status = io.StringIO(), io.StringIO(), sys.argv, 0
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    module = args[1] if args[0] == "-m" else None
    sys.argv = [module or args[0], *args[2 if module else 1:]]
    try:
        with (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), contextlib.chdir(ROOT),
              warnings.catch_warnings(), torch.random.fork_rng()):
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)  # runpy, on a module imported before
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(str(ROOT / args[0]), run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            print(e.code, file=stderr)  # as Python prints it on the way out
    finally:
        sys.argv = argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


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


@pytest.fixture(scope="session", params=["teacher", "student"])
def each_shipped_pipeline(request, shipped_pipeline) -> Pipeline:
    """The shipped model, then its student: what works with one must work with the other."""
    return shipped_pipeline if request.param == "teacher" else Pipeline.load(STUDENT_WEIGHTS, device="cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, what, timeout: float = HANG_S, poll_s: float = 0.02) -> None:
    """Wait until condition() is true. The deadline only bounds a hang, however busy the machine:
    it decides no outcome, and on expiry the test fails saying what never happened (`what`: a
    string, or a function that describes it as things stand then). The one place in the suite
    that sleeps or reads the time (test_suite_rules.py holds it to that)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what() if callable(what) else what}: not within {timeout:.0f} s")
        time.sleep(poll_s)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path | None = None, timeout: float = HANG_S) -> None:
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
def served_app_log(tmp_path_factory) -> Path:
    """Where served_app's output goes: what its server logs."""
    return tmp_path_factory.getbasetemp() / "served-app.log"


@pytest.fixture(scope="session")
def served_app(served_app_log) -> str:
    """`python app.py --mcp` started as a user starts it, on a free port (its tools for assistants
    too); yields its URL. Its output goes to a file: a pipe nobody reads would stall the app once
    full (each refused request logs)."""
    port = free_port()
    with open(served_app_log, "w") as output:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu", "--mcp"],
                                   cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    wait_until_serving(url, process, served_app_log)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright: pip install -e '.[dev]' (or leave the slow tests out: -m 'not slow')")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM}: apt-get install -y chromium on Debian or Ubuntu, or "
                    "set CHROMIUM to a Chromium or Chrome binary (or leave the slow tests out: -m 'not slow')")
    # Playwright's own 5 s was too short for Repair's editor to appear with two other processes
    # keeping the cores busy: its expectations wait as long as wait_until.
    expect.set_options(timeout=HANG_S * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request) -> Path:
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    capsys = request.config.pluginmanager.getplugin("capturemanager")
    with capsys.global_and_fixture_disabled():
        print(f"\nbrowser screenshots: {folder}")
    return folder


def dark_share(screenshot: bytes) -> float:
    """The share of a screenshot's pixels that are dark (ink on the white canvas)."""
    grey = Image.open(io.BytesIO(screenshot)).convert("L")
    return sum(grey.histogram()[:80]) / (grey.width * grey.height)


class Gate:
    """A forward pre-hook that holds the model's passes once `allowed` of them have run, until more
    are allowed: a run paused at a known step, whatever the machine's speed. Open by default."""

    def __init__(self):
        self.allowed, self.passed, self.changed = math.inf, 0, threading.Condition()

    def __call__(self, module, inputs) -> None:  # in the model's thread
        with self.changed:
            self.changed.wait_for(lambda: self.passed < self.allowed)
            self.passed += 1

    def hold(self) -> None:
        with self.changed:
            self.allowed = self.passed

    def allow(self, passes: int = 1) -> None:
        with self.changed:
            self.allowed = min(self.allowed, self.passed) + passes
            self.changed.notify_all()

    def open(self) -> None:
        with self.changed:
            self.allowed = math.inf
            self.changed.notify_all()


@pytest.fixture(scope="module")
def gated_app(shipped_pipeline):
    """The app served from this process as `python app.py` serves it (shared forward passes, the
    same launch options), its model behind a Gate; yields (URL, gate)."""
    import webapp  # Gradio: only for the browser tests
    threads = torch.get_num_threads()
    gate = Gate()
    pipe = Pipeline(shipped_pipeline.model, shipped_pipeline.schedule, shipped_pipeline.sampling_config, shared=True)
    hook = shipped_pipeline.model.register_forward_pre_hook(gate)
    blocks = webapp.build_app(pipe)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, **webapp.LAUNCH_OPTIONS)
    try:
        yield f"http://127.0.0.1:{port}/", gate
    finally:
        gate.open()
        blocks.close()
        hook.remove()
        pipe.denoiser.close()
        torch.set_num_threads(threads)
