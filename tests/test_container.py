"""The Dockerfile, built and run for real: health check, /generate through gradio_client,
a short training run with mounted folders, a non-root process and a prompt stop.

Uses `docker` where an engine answers, and otherwise the podman set-up that
../shared/container/prepare.sh provides on machines without Docker. Takes a few minutes,
most of them building the image; prints its figures.
"""

import math
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

import imageio.v3 as iio
import pytest
import torch
from gradio_client import Client

from diffusion import Pipeline, media
from diffusion.classifier import load_classifier, predict

from .conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow  # needs a container engine and minutes: see docs/testing.md
PREPARE = ROOT.parent / "shared" / "container" / "prepare.sh"
IMAGE = "mnist-diffusion:smoke-test"


@dataclass
class Engine:
    command: list[str]
    build_args: list[str]
    run_args: list[str]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"`{args[0]}` failed with status {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result


def find_engine() -> Engine:
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return Engine(["docker"], [], [])
    if PREPARE.exists():
        script = f'source "{PREPARE}" >&2 && printf "%s\\n" "$CONTAINER_ENGINE" "$CONTAINER_BUILD_ARGS" "$CONTAINER_RUN_ARGS"'
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            pytest.fail(f"{PREPARE} failed:\n{result.stderr[-3000:]}")
        engine, build_args, run_args = result.stdout.splitlines()[-3:]
        # podman builds OCI images unless told otherwise, and OCI images drop HEALTHCHECK.
        return Engine(shlex.split(engine), [*shlex.split(build_args), "--format", "docker"], shlex.split(run_args))
    pytest.fail("the container test needs a container engine and neither answers here: Docker with a running "
                "engine (https://docs.docker.com/engine/install/), or podman (apt-get install -y podman; on this "
                f"project's machines through {PREPARE}); or leave the slow tests out: -m 'not slow'")


def finished_at(text: str) -> float:
    """The Unix time of a container's State.FinishedAt, as docker ("...T01:02:03.123456789Z") or
    podman ("... 01:02:03.123456789 +0000 UTC") prints it."""
    match = re.search(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?", text)
    assert match, f"cannot read the time {text!r}"
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone[:3] + ":" + zone[-2:]
    return datetime.fromisoformat(f"{date}T{clock}.{(fraction or '0')[:6]:0<6}{zone}").timestamp()


def wait_until_healthy(engine: Engine, name: str, timeout: float = 180) -> None:
    def healthy() -> bool:
        if engine.command[0].endswith("podman"):
            engine("healthcheck", "run", name, check=False)  # podman runs health checks on request, without systemd
        if engine("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy":
            return True
        if engine("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            logs = engine("logs", name, check=False)
            pytest.fail(f"the container stopped:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        return False

    wait_until(healthy, "the container healthy", timeout, poll_s=1)


def test_the_image_builds_serves_trains_and_stops_promptly(tmp_path, mnist_root, capsys):
    engine = find_engine()
    figures = {}
    name = f"mnist-diffusion-smoke-{os.getpid()}"
    try:
        started = time.monotonic()
        engine("build", *engine.build_args, "-t", IMAGE, str(ROOT), timeout=1800)
        figures["build"] = f"{time.monotonic() - started:.0f} s"
        size = int(engine("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
        figures["image size"] = f"{size / 1e9:.2f} GB"

        port = free_port()
        started = time.monotonic()
        engine("run", "-d", "--name", name, *engine.run_args, "-p", f"127.0.0.1:{port}:7860", IMAGE)
        wait_until_healthy(engine, name)
        figures["run to healthy"] = f"{time.monotonic() - started:.1f} s"
        uid = engine("exec", name, "sh", "-c", "grep '^Uid:' /proc/1/status").stdout.split()[1]
        assert uid != "0", "the app in the container must not run as root"

        started = time.monotonic()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        _, details, gif_path, image_path, _, readings = client.predict(
            digit="all ten", guidance_scale=1.5, sampler="dpmpp", steps=10, seed=0, samples_per_digit=1,
            api_name="/generate")
        figures["API round trip"] = f"{time.monotonic() - started:.1f} s ({details})"
        assert readings["digits"] == list(range(10)), "the classifier ships in the image and reads each digit"
        image = iio.imread(image_path)
        scale = image.shape[1] // (10 * 30 + 2)  # ten 28 px digits with 2 px padding, upscaled
        digits = torch.stack([torch.from_numpy(image[2 * scale::scale, (2 + 30 * d) * scale::scale][:28, :28])
                              for d in range(10)]).float().div(127.5).sub(1).unsqueeze(1)
        predicted, _ = predict(load_classifier(), digits)
        assert (predicted == torch.arange(10)).sum() >= 9, f"asked for 0-9, the classifier read {predicted.tolist()}"
        # 10 steps, with frames in between them: the app's animation at its usual length.
        assert len(iio.imread(gif_path, index=None)) == 1 + 10 * math.ceil(media.MIN_FRAMES / 10)

        started, stop_sent_at = time.monotonic(), time.time()
        engine("stop", "-t", "10", name, timeout=60)
        stop_s = time.monotonic() - started
        exited_s = finished_at(engine("inspect", "--format", "{{.State.FinishedAt}}", name).stdout) - stop_sent_at
        figures["stop"] = f"{stop_s:.1f} s (the app exited {exited_s:.1f} s after the stop was sent)"
        exit_code = engine("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        # Exit status 0 within stop's 10 s grace: the app handled SIGTERM itself and was not killed
        # (137). How fast is printed, not asserted: it depends on how busy the machine is.
        assert exit_code == "0", f"the app should exit cleanly on SIGTERM, not be killed (exit code {exit_code})"

        out = tmp_path / "out"
        out.mkdir()
        out.chmod(0o777)  # the image's user writes here
        engine("run", "--rm", *engine.run_args, "-v", f"{os.path.abspath(mnist_root)}:/data:ro", "-v", f"{out}:/out",
               IMAGE, "python3", "train.py", "--data-dir", "/data", "--subset", "256", "--batch-size", "32",
               "--max-steps", "8", "--run-dir", "/out/run", "--out", "/out/weights.safetensors", timeout=600)
        assert Pipeline.load(out / "weights.safetensors", device="cpu").metadata["training"]["steps"] == 8
    finally:
        engine("rm", "-f", name, check=False)
        engine("rmi", "-f", IMAGE, check=False, timeout=300)
        engine("image", "prune", "-f", check=False, timeout=300)
    with capsys.disabled():
        print("\ncontainer: " + "; ".join(f"{key} {value}" for key, value in figures.items()))

