import json

import imageio.v3 as iio
import numpy as np
import pytest

from .conftest import run_script


def test_sample_cli_writes_npz_grid_and_gif(tmp_path):
    out, grid, gif = tmp_path / "s.npz", tmp_path / "g.png", tmp_path / "p.gif"
    result = run_script("-m", "diffusion.sample", "--digits", "3,7", "--per-digit", "2", "--sampler", "ddim",
                        "--steps", "4", "--seed", "1", "--out", str(out), "--grid", str(grid), "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        assert data["images"].shape == (4, 28, 28) and data["images"].dtype == np.uint8
        assert data["labels"].tolist() == [3, 3, 7, 7] and data["labels"].dtype == np.int64
        assert data["images"].max() > 200 and data["images"].min() < 50  # a digit: bright strokes on black
    assert iio.imread(gif, index=None).shape[0] == 4  # one frame per step
    assert iio.imread(grid).ndim == 2


@pytest.mark.parametrize("args, message", [
    (["--digits", "x"], "invalid digits"), (["--digits", "10"], "digits go from 0 to 9"),
    (["--digits", "5-2"], "ranges upwards"), (["--steps", "0"], "steps must be"),
    (["--steps", "-5"], "non-negative integer"), (["--sampler", "euler"], "invalid choice"),
    (["--guidance", "nan"], "guidance_scale"), (["--guidance", "abc"], "invalid float"),
    (["--seed", str(2**70)], "seed"), (["--per-digit", "0"], "per-digit"),
    (["--weights", "nowhere.safetensors"], "no such file"),
])
def test_sample_cli_bad_arguments_exit_with_one_line(tmp_path, args, message):
    result = run_script("-m", "diffusion.sample", "--out", str(tmp_path / "s.npz"), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "s.npz").exists()


def test_evaluate_cli_reports_accuracy_and_frechet_distance(tmp_path, mnist_root):
    out = tmp_path / "r.json"
    result = run_script("-m", "diffusion.evaluate", "--data-dir", mnist_root, "--per-digit", "3",
                        "--samplers", "dpmpp:4", "--guidance", "1.5", "--out", str(out), "--table", str(tmp_path / "t.md"))
    assert result.returncode == 0, result.stderr
    [row] = json.loads(out.read_text())["results"]
    assert row["samples"] == 30 and set(row["per_digit_accuracy"]) == {str(d) for d in range(10)}
    assert 0.8 <= row["accuracy"] <= 1 and row["frechet_distance"] > 0 and row["frechet_floor"] > 0
    assert "| dpmpp | 4 | 1.5 |" in (tmp_path / "t.md").read_text()


def test_bench_prints_a_median(tmp_path):
    result = run_script("-m", "diffusion.bench", "--samplers", "ddim:2", "--repeats", "2")
    assert result.returncode == 0, result.stderr
    assert "ddim    2 steps: median" in result.stdout
