import math
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image

from diffusion.io import load_safetensors
from diffusion.progress import COLUMNS, load_snapshot, read_rows, sample_points, snapshot_path, snapshot_steps

from .conftest import ROOT, run_here, run_script, wait_until

TINY = {"subset": 256, "batch_size": 32, "channels": "8,16", "timesteps": 100, "warmup_steps": 5, "checkpoint_every": 2}


def tiny(**settings) -> list[str]:
    """train.py's flags for a tiny run: TINY's settings, those given instead."""
    return [item for key, value in {**TINY, **settings}.items() for item in (f"--{key.replace('_', '-')}", str(value))]


def train_args(tmp_path, name, steps, **settings):
    return ["train.py", *tiny(**settings), "--max-steps", str(steps), "--run-dir", str(tmp_path / name),
            "--out", str(tmp_path / f"{name}.safetensors")]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, mnist_root):
    """Weights from a run of STEPS steps that nothing interrupted, in a process of its own as the
    interrupted runs are: in the test's process PyTorch may use another number of threads, which
    sums in another order."""
    tmp_path = tmp_path_factory.mktemp("straight")
    straight = run_script(*train_args(tmp_path, "straight", STEPS), "--data-dir", mnist_root)
    assert straight.returncode == 0, straight.stderr
    assert (tmp_path / "straight" / "samples_epoch001.png").exists()
    return tmp_path / "straight.safetensors"


STEPS = 40


def checkpoint_step(checkpoint) -> int:
    """The step of a run's checkpoint, 0 before its first (checkpoints are written atomically: never half a file)."""
    return load_safetensors(checkpoint)[1]["step"] if checkpoint.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("stop, after", [(signal.SIGINT, 2), (signal.SIGKILL, 10)], ids=["ctrl-c", "sigkill"])
def test_interrupted_training_resumes_to_the_same_weights(tmp_path, mnist_root, straight_run, stop, after):
    # Stop a run once a checkpoint of at least `after` steps exists, wherever in its work it is then,
    # and run the same command again. SIGSTOP freezes it first, so that the step it is stopped at
    # is read before it can move on or finish, however fast the machine.
    args = [sys.executable, *train_args(tmp_path, "resumed", STEPS), "--data-dir", mnist_root]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "resumed" / "checkpoint.safetensors"
    wait_until(lambda: process.poll() is not None or checkpoint_step(checkpoint) >= after,
               f"a checkpoint of {after} steps")
    process.send_signal(signal.SIGSTOP)
    assert process.poll() is None, f"the run ended before it could be stopped: {process.communicate()}"
    frozen_at = checkpoint_step(checkpoint)
    process.send_signal(stop)
    process.send_signal(signal.SIGCONT)
    stdout, stderr = process.communicate(timeout=120)
    if stop == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert "run the same command to continue" in stdout
    else:
        assert process.returncode == -signal.SIGKILL
    stopped_at = checkpoint_step(checkpoint)
    assert after <= frozen_at <= stopped_at < STEPS, (frozen_at, stopped_at)

    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {stopped_at} of {STEPS} (resumed" in resumed.stdout

    a, meta_a = load_safetensors(straight_run)
    b, meta_b = load_safetensors(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert meta_a["training"]["steps"] == meta_b["training"]["steps"] == STEPS
    straight_rows, resumed_rows = (read_rows(path.parent / path.stem / "loss.csv")
                                   for path in (straight_run, tmp_path / "resumed.safetensors"))
    assert [row["step"] for row in resumed_rows] == list(range(1, STEPS + 1)), "each step once, none lost"
    assert [row["loss"] for row in resumed_rows] == [row["loss"] for row in straight_rows], "as if never stopped"
    # The smoothed loss goes on from the CSV's own losses, written to 6 significant digits.
    assert [row["smoothed_loss"] for row in resumed_rows] == pytest.approx([row["smoothed_loss"] for row in straight_rows],
                                                                          rel=1e-5)


def test_a_run_shows_its_progress_in_its_folder(tmp_path, mnist_root):
    """The loss history, its plot, the ten digits at each sample point (0, 50 and the last), and
    with --snapshots the weights there. Small batches, one epoch and one checkpoint, to be quick."""
    result = run_here(*train_args(tmp_path, "run", 60, batch_size=8, subset=1024, checkpoint_every=60),
                        "--data-dir", mnist_root, "--snapshots")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    rows = read_rows(run / "loss.csv")
    assert (run / "loss.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [row["step"] for row in rows] == list(range(1, 61))
    assert all(math.isfinite(row[column]) and row[column] > 0 for row in rows for column in COLUMNS)
    assert sum(row["loss"] for row in rows[-20:]) < sum(row["loss"] for row in rows[:20]), "it learns"
    assert sample_points(60) == [0, 50, 60]
    assert sorted(path.name for path in (run / "progress").iterdir()) == [
        "step-0000000.png", "step-0000050.png", "step-0000060.png"]
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 3 and gif.width == 2 * (10 * 30 + 2)
    chart = (run / "loss.svg").read_text()
    assert chart.count("<circle") == 3 and "over 60 steps" in chart and "marked: step 0 (smoothed" in chart
    check_snapshots(run / "snapshots", rows, tmp_path / "run.safetensors")


def check_snapshots(folder, rows, exported):
    """A weights file per sample point, in float16, saying its step, loss and command; the last is
    the exported weights, rounded to float16, and loads as float32."""
    assert snapshot_steps(folder) == [0, 50, 60]
    for step in snapshot_steps(folder):
        tensors, metadata = load_safetensors(snapshot_path(step, folder))
        assert {t.dtype for t in tensors.values()} == {torch.float16}
        training = metadata["training"]
        assert training["step"] == step and "--snapshots" in training["command"]
        assert training["loss"] == (None if step == 0 else pytest.approx(rows[step - 1]["smoothed_loss"], rel=1e-5))
    pipe = load_snapshot(60, folder)
    final, _ = load_safetensors(exported)
    for name, value in pipe.model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, final[name].half().float()), name


def test_sample_points_are_geometric_and_end_at_the_last_step():
    assert sample_points(18_760) == [0, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 18760]
    assert sample_points(50) == [0, 50] and sample_points(7) == [0, 7]


def test_resuming_with_other_settings_is_refused(tmp_path, mnist_root):
    first = run_here(*train_args(tmp_path, "run", 2), "--data-dir", mnist_root)
    assert first.returncode == 0, first.stderr
    other = run_here(*train_args(tmp_path, "run", 2), "--data-dir", mnist_root, "--lr", "0.5")
    assert other.returncode == 2 and "other settings (lr differ)" in other.stderr


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_replicas_identical(tmp_path, mnist_root):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *train_args(tmp_path, "ddp", 4), "--data-dir", mnist_root],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas identical across 2 processes: max |difference| = 0" in result.stdout
    _, metadata = load_safetensors(tmp_path / "ddp.safetensors")
    assert metadata["training"]["command"].startswith("torchrun --nproc_per_node=2 train.py")


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be at least 1"), (["--channels", "a,b"], "--channels"),
    (["--label-dropout", "1.5"], "--label-dropout"), (["--batch-size", "100000"], "fewer than one batch"),
])
def test_bad_training_arguments_exit_with_one_line(tmp_path, mnist_root, args, message):
    result = run_here("train.py", "--data-dir", mnist_root, "--run-dir", str(tmp_path / "r"), *tiny(), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    result = run_script("train.py", "--data-dir", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "r"),
                        env={"PATH": "", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "could not be downloaded" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
