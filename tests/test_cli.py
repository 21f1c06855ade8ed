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


def test_bench_measures_each_cell_and_compares(tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("-m", "diffusion.bench", "--samplers", "dpmpp:2,ddpm:50", "--sizes", "1,10", "--repeats", "2",
                        "--budget", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    # Each cell is measured, or skipped because its estimate is over the budget; which, depends
    # on this machine's speed, so only the structure is asserted.
    cells = {(c["sampler"], c["steps"], c["digits"]): c for c in bench["cells"]}
    skipped = {(c["sampler"], c["steps"], c["digits"]): c for c in bench["skipped"]}
    assert set(cells) | set(skipped) == {("dpmpp", 2, 1), ("dpmpp", 2, 10), ("ddpm", 50, 1), ("ddpm", 50, 10)}
    assert not set(cells) & set(skipped) and {("dpmpp", 2, 1), ("ddpm", 50, 1)} <= set(cells)
    for key, cell in skipped.items():
        assert cell["estimated_s"] > 3 and f"{key[2]:>6}   skipped: one run would take about" in result.stdout
    for cell in cells.values():
        assert 0 < cell["min_s"] <= cell["median_s"] <= cell["max_s"] and cell["runs"] >= 1
        assert cell["first_step_s"] > 0
        assert 0 < cell["share_of_matmul_peak"] < 2 and cell["images_per_s"] > 0
    assert bench["forward_flops_per_image"] > 1e8 and bench["matmul_peak_flops_per_s"] > 1e9
    assert bench["comparisons"]["diffusers_over_ours"] > 0 and bench["training_images_per_s"] > 0
    assert "GFLOP/s" in result.stdout and "DPMSolverMultistepScheduler" in result.stdout
    assert f"device {bench['device']}" in result.stdout


def test_bench_refuses_bad_settings():
    result = run_script("-m", "diffusion.bench", "--repeats", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
