import csv
import json
import re
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from diffusion import Pipeline, media
from diffusion.classifier import RESNET_PATH, ResidualClassifier, load_classifier, predict
from diffusion.data import load_mnist, to_model_range
from diffusion.io import load_safetensors

from .conftest import SHIPPED_WEIGHTS, run_here, run_script


def test_sample_cli_writes_npz_grid_and_gif(tmp_path):
    out, grid, gif = tmp_path / "s.npz", tmp_path / "g.png", tmp_path / "p.gif"
    result = run_here("-m", "diffusion.sample", "--digits", "3,7", "--per-digit", "2", "--sampler", "ddim",
                        "--steps", "4", "--seed", "1", "--out", str(out), "--grid", str(grid), "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        assert data["images"].shape == (4, 28, 28) and data["images"].dtype == np.uint8
        assert data["labels"].tolist() == [3, 3, 7, 7] and data["labels"].dtype == np.int64
        assert data["images"].max() > 200 and data["images"].min() < 50  # a digit: bright strokes on black
    # The app's animation: x_t above x0 (2 x 2 grids of 30 px cells and a 4 px bar), upscaled
    # crisply, with at least 48 frames of motion whatever the step count.
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] > media.MIN_FRAMES
    scale = media.crisp_scale((2 * 62 + 4, 62), media.GIF_SIZE)
    assert frames.shape[1:] == (scale * (2 * 62 + 4), scale * 62), frames.shape
    with Image.open(gif) as animation:
        durations = [animation.seek(i) or animation.info["duration"] for i in range(animation.n_frames)]
    frame_ms = round(1000 / media.FPS) // 10 * 10  # a GIF counts in hundredths of a second
    assert set(durations[:-1]) == {frame_ms} and durations[-1] == 1000 * media.HOLD_FINAL_S
    assert iio.imread(grid).ndim == 2


def test_sample_cli_gif_of_a_big_batch_shows_the_first_samples_of_each_digit_at_the_apps_pace(tmp_path):
    gif = tmp_path / "big.gif"
    result = run_here("-m", "diffusion.sample", "--digits", "0-9", "--per-digit", "12", "--steps", "2",
                        "--out", str(tmp_path / "s.npz"), "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s.npz") as data:
        assert len(data["images"]) == 120  # all samples are kept ...
    frames = iio.imread(gif, index=None)
    shown = media.MAX_ANIMATED_PER_DIGIT
    assert frames.shape[0] > media.MIN_FRAMES  # ... and the animation is paced as the app's
    # ... and shows 8 of each digit: two grids of 8 rows of 30 px (28 and padding) and a bar, upscaled.
    scale = frames.shape[2] // (10 * 30 + 2)
    assert frames.shape[1:] == (scale * (2 * (shown * 30 + 2) + 4), scale * (10 * 30 + 2)), frames.shape


def test_sample_cli_writes_what_the_classifier_reads_at_each_step(tmp_path):
    readings = tmp_path / "r.csv"
    result = run_here("-m", "diffusion.sample", "--digits", "3,7", "--steps", "4", "--seed", "2",
                        "--out", str(tmp_path / "s.npz"), "--probabilities", str(readings))
    assert result.returncode == 0, result.stderr
    with open(readings, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["image"]), int(r["digit"]), int(r["step"])) for r in rows] == [
        (image, digit, step) for step in range(1, 5) for image, digit in enumerate((3, 7))]
    pipe = Pipeline.load(device="cpu")
    assert [int(r["timestep"]) for r in rows[::2]] == pipe.timesteps(4)  # the fitted schedule, stretched to 4 steps
    probabilities = np.array([[float(r[f"p{k}"]) for k in range(10)] for r in rows])
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert probabilities[-2:].argmax(1).tolist() == [3, 7], "the last step is read as the digits asked for"


@pytest.mark.parametrize("args, message", [
    (["--digits", "x"], "argument --digits: invalid digits"), (["--digits", "10"], "digits go from 0 to 9"),
    (["--digits", "5-2"], "ranges upwards"), (["--steps", "0"], "argument --steps: must be an integer from 1 to 1000"),
    (["--steps", "-5"], "argument --steps: must be an integer from 1"), (["--sampler", "euler"], "invalid choice"),
    (["--guidance", "-1"], "argument --guidance: must be a number from 0 to 100, not -1.0"),
    (["--guidance", "nan"], "argument --guidance: must be a number"), (["--guidance", "abc"], "invalid float"),
    (["--seed", str(2**70)], "argument --seed: must be an integer from 0 to 2^63-1"),
    (["--seed", "-3"], "argument --seed: must be an integer from 0"),
    (["--per-digit", "0"], "argument --per-digit: must be a positive integer"),
    (["--gif", "out.png"], "argument --gif: must be a file name ending in .gif, not 'out.png'"),
    (["--grid", "grid.gif"], "argument --grid: must be a file name ending in .png"),
    (["--out", "samples.txt"], "argument --out: must be a file name ending in .npz"),
    (["--probabilities", "r.json"], "argument --probabilities: must be a file name ending in .csv"),
    (["--device", "tpu"], "argument --device: must be one this machine has"),
    (["--weights", "nowhere.safetensors"], "no such file"),
    (["--guidance-interval", "some"], "argument --guidance-interval: takes LOW-HIGH timesteps, e.g. 443-777, or all"),
    (["--guidance-interval", "777-443"], "argument --guidance-interval: must be two timesteps (low, high)"),
])
def test_sample_cli_bad_arguments_exit_with_one_line_naming_the_flag(tmp_path, args, message):
    out = args[1] if args[0] == "--out" else str(tmp_path / "s.npz")
    result = run_here("-m", "diffusion.sample", "--out", out, *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "s.npz").exists() and not list(tmp_path.iterdir())


def test_morph_cli_writes_the_row_and_the_loop(tmp_path):
    row, gif = tmp_path / "row.png", tmp_path / "m.gif"
    result = run_here("-m", "diffusion.morph", "--start", "1:0", "--end", "7:0", "--frames", "5",
                        "--row", str(row), "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    assert re.search(r"reads the frames as: 1 .* 7$", result.stdout.splitlines()[0]), result.stdout
    assert iio.imread(row).shape == (2 * 32, 2 * (5 * 30 + 2))  # five digits in a row, doubled
    with Image.open(gif) as loop:
        assert loop.n_frames == 2 * 5 - 2  # there and back


@pytest.mark.parametrize("args, message", [
    (["--start", "3:1", "--end", "3:1"], "argument --end: must be a different digit or seed from the start"),
    (["--start", "3", "--end", "3:1"], "argument --start: takes DIGIT:SEED, e.g. 3:1, not '3'"),
    (["--start", "3:1", "--end", "11:1"], "argument --start/--end (digit): must be an integer from 0 to 9, not 11"),
    (["--start", "3:1", "--end", "3:2", "--frames", "1"], "argument --frames: must be an integer from 3 to 16, not 1"),
    (["--start", "3:1", "--end", "3:2", "--sampler", "ddpm"], "argument --sampler: invalid choice"),
    (["--start", "3:1", "--end", "3:2", "--row", "r.gif"], "argument --row: must be a file name ending in .png"),
    (["--start", "3:1", "--end", "3:2"], "give --row, --gif or both"),
])
def test_morph_cli_bad_arguments_exit_with_one_line_naming_the_flag(tmp_path, args, message):
    extra = [] if "--row" in args or message.startswith("give") else ["--row", str(tmp_path / "r.png")]
    result = run_here("-m", "diffusion.morph", *args, *extra)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.iterdir())


def test_evaluate_says_when_each_digit_is_decided(tmp_path):
    pipe = Pipeline.load(device="cpu")  # its fitted schedule, stretched to 3 steps
    out = tmp_path / "decided.json"
    result = run_here("-m", "diffusion.evaluate", "--when-decided", "--per-digit", "2", "--samplers", "dpmpp:3",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    [decided] = json.loads(out.read_text())["results"]
    assert decided["samples"] == 20 and set(decided["per_digit"]) == {str(d) for d in range(10)}
    for digit in decided["per_digit"].values():
        assert digit["samples"] == 2 and digit["never"] == 0
        assert 1 <= digit["median"]["step"] <= digit["p90"]["step"] <= 3
        assert digit["median"]["timestep"] in pipe.timesteps(3) and 0 <= digit["median"]["signal"] < 1
    assert "| digit | samples | median step | 90th percentile | never |" in result.stdout


@pytest.mark.slow
def test_evaluate_cli_reports_accuracy_and_frechet_distance(tmp_path, mnist_root):
    out = tmp_path / "r.json"
    result = run_here("-m", "diffusion.evaluate", "--data-dir", mnist_root, "--per-digit", "3",
                        "--samplers", "dpmpp:4", "--guidance", "1.5", "--guidance-interval", "all,0-0",
                        "--out", str(out), "--table", str(tmp_path / "t.md"))
    assert result.returncode == 0, result.stderr
    everywhere, nowhere = json.loads(out.read_text())["results"]
    for row in (everywhere, nowhere):
        assert row["samples"] == 30 and set(row["judges"]) == {"convnet", "resnet"}, "two judges, each by its name"
        for verdict in row["judges"].values():
            assert set(verdict["per_digit_accuracy"]) == {str(d) for d in range(10)}
            assert 0.8 <= verdict["accuracy"] <= 1 and verdict["frechet_distance"] > 0 and verdict["frechet_floor"] > 0
        floors = [verdict["frechet_floor"] for verdict in row["judges"].values()]
        assert floors[0] != floors[1], "each feature space has its own floor"
    # Counted on the network: guided at each of the 4 steps, two evaluations each; at t = 0 only, which
    # 4 steps never reach, one each.
    assert (everywhere["evaluations_per_image"], nowhere["evaluations_per_image"]) == (8, 4)
    table = (tmp_path / "t.md").read_text()
    assert "| dpmpp | 4 | 1.5 | 0-999 | 8 |" in table and "| dpmpp | 4 | 1.5 | 0-0 | 4 |" in table
    assert "convnet: accuracy" in table and "resnet: accuracy" in table


@pytest.mark.slow
def test_bench_measures_each_cell_and_compares(tmp_path):
    """A budget no run fits makes which cells run independent of this machine's speed: each
    sampler's first size (ten digits) is measured once, and its later size (one) is skipped on the
    estimate that measurement gives."""
    out = tmp_path / "bench.json"
    result = run_here("-m", "diffusion.bench", "--samplers", "dpmpp:2,ddpm:50", "--sizes", "10,1", "--repeats", "2",
                        "--budget", "0.000001", "--vs", "weights/mnist-diffusion.safetensors", "--out", str(out))
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    pipe = Pipeline.load(device="cpu")
    recommended = pipe.sampling_config
    cells = {(c["sampler"], c["steps"], c["digits"]): c for c in bench["cells"]}
    skipped = {(c["sampler"], c["steps"], c["digits"]): c for c in bench["skipped"]}
    assert set(cells) == {("dpmpp", 2, 10), ("ddpm", 50, 10)} and set(skipped) == {("dpmpp", 2, 1), ("ddpm", 50, 1)}
    for key, cell in skipped.items():
        assert cell["estimated_s"] > 0 and f"{key[2]:>6}   skipped: one run would take about" in result.stdout
        assert cell["estimated_s"] == pytest.approx(cells[key[:2] + (10,)]["median_s"] / 10)
    for cell in cells.values():
        assert 0 < cell["min_s"] == cell["median_s"] == cell["max_s"] and cell["runs"] == 1, "one run: over the budget"
        assert cell["first_step_s"] > 0
        assert 0 < cell["share_of_matmul_peak"] < 2 and cell["images_per_s"] > 0
        # Counted on the network: two evaluations at each guided step, one at the others.
        low, high = recommended.guidance_interval or (0, 999)
        guided = sum(low <= t <= high for t in pipe.timesteps(cell["steps"]))
        assert cell["evaluations_per_image"] == cell["steps"] + guided
    assert bench["forward_flops_per_image"] > 1e8 and bench["matmul_peak_flops_per_s"] > 1e9
    # diffusers is compared with our ten-digit cell.
    assert bench["comparisons"]["diffusers_over_ours"] > 0 and "DPMSolverMultistepScheduler" in result.stdout
    assert bench["training_images_per_s"] > 0
    for count in ("1", "10"):  # what reading each step's x0 adds to the app's stream
        reading = bench["comparisons"]["reading"][count]
        assert reading["without_s"] > 0 and reading["with_s"] > 0 and "ms_per_step" in reading
    assert "stream with class probabilities, dpmpp 2 steps, 1 digit: median" in result.stdout
    assert "GFLOP/s" in result.stdout
    assert f"device {bench['device']}" in result.stdout
    versus = bench["comparisons"]["versus"]  # the same file against itself: both timed, alternating
    assert versus["ours"]["runs"] == versus["vs"]["runs"] == 9 and versus["ours_over_vs"] > 0
    assert "with weights/mnist-diffusion.safetensors" in result.stdout


@pytest.mark.parametrize("script, args, message", [
    ("diffusion.bench", ["--repeats", "0"], "--repeats, --budget and --sizes must be positive"),
    ("diffusion.bench", ["--samplers", "dpmpp:0"], "argument --samplers (steps): must be an integer from 1 to 1000"),
    ("diffusion.bench", ["--guidance", "200"], "argument --guidance: must be a number from 0 to 100"),
    ("diffusion.evaluate", ["--samplers", "euler:5"], "argument --samplers (sampler): must be one of ddpm, ddim, dpmpp"),
    ("diffusion.evaluate", ["--device", "cuda:7"], "argument --device: must be one this machine has"),
    ("diffusion.evaluate", ["--guidance-interval", "0-1000"], "argument --guidance-interval: must be two timesteps"),
    ("diffusion.evaluate", ["--classifiers", "weights/mnist-classifier.safetensors,weights/mnist-classifier.safetensors"],
     "--classifiers must be of different architectures"),
    ("diffusion.tune", ["--start", "999,500,600"], "--start must be 3 distinct timesteps from 999 down"),
    ("diffusion.tune", ["--sampler", "ddpm"], "--sampler must be deterministic"),
    ("diffusion.tune", ["--steps", "9", "--reference-steps", "9"], "--reference-steps must be more than the 9 steps fitted"),
    ("diffusion.tune", ["--teacher", "weights/mnist-diffusion.safetensors"], "is not a student (train.py --distill-from"),
    ("diffusion.classifier", ["--epochs", "0"], "--epochs must be at least 1"),
    ("diffusion.classifier", ["--subset", "100"], "--subset must be at least 128, one batch"),
])
def test_bench_evaluate_tune_and_classifier_refuse_bad_settings_naming_the_flag(script, args, message):
    result = run_here("-m", script, *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_edit_cli_finishes_a_drawing_and_repairs_it(tmp_path):
    from .test_edit import three_drawn_in_a_corner

    picture, mask = tmp_path / "three.png", tmp_path / "bottom.png"
    three_drawn_in_a_corner().save(picture)
    bottom = Image.new("L", (800, 800))
    bottom.paste(255, (0, 255, 800, 800))
    bottom.save(mask)
    out, gif, model_input = tmp_path / "out.png", tmp_path / "out.gif", tmp_path / "input.png"
    result = run_here("-m", "diffusion.edit", "draw", str(picture), "--out", str(out), "--gif", str(gif),
                        "--input", str(model_input))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "the picture reads as a 3"
    assert iio.imread(out).shape == iio.imread(model_input).shape == (280, 280)
    with Image.open(gif) as animation:
        assert animation.n_frames >= 48
    result = run_here("-m", "diffusion.edit", "repair", str(picture), "--mask", str(mask), "--digit", "3",
                        "--out", str(out))
    assert result.returncode == 0 and f"wrote {out}" in result.stdout, result.stderr


@pytest.mark.parametrize("args, message", [
    (["draw", "PICTURE", "--strength", "1.5"], "argument --strength: must be a number above 0 and at most 1, not 1.5"),
    (["draw", "PICTURE", "--digit", "12"], "argument --digit: invalid choice: 12"),
    (["repair", "PICTURE"], "repair needs --mask, and draw takes none"),
    (["draw", "NOTES"], "the file is not a picture this app can read"),
    (["draw", "WHITE"], "the picture is empty or one flat colour"),
])
def test_edit_cli_bad_arguments_exit_with_one_line(tmp_path, args, message):
    from .test_edit import three_drawn_in_a_corner

    files = {"PICTURE": tmp_path / "three.png", "NOTES": tmp_path / "notes.png", "WHITE": tmp_path / "white.png"}
    three_drawn_in_a_corner().save(files["PICTURE"])
    files["NOTES"].write_text("not a picture")
    Image.new("RGB", (100, 100), "white").save(files["WHITE"])
    out = tmp_path / "out.png"
    result = run_here("-m", "diffusion.edit", *[str(files.get(arg, arg)) for arg in args], "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_tune_write_stores_the_fit_as_the_weights_recommendation(tmp_path):
    """`diffusion.tune --write` on a copy of the shipped weights: the fitted timesteps become what
    the copy recommends, with how they were found; the network and the shipped file are untouched."""
    shipped = Pipeline.load(device="cpu")
    copy = tmp_path / "weights.safetensors"
    shutil.copy(SHIPPED_WEIGHTS, copy)
    before = SHIPPED_WEIGHTS.read_bytes()
    result = run_here("-m", "diffusion.tune", "--weights", str(copy), "--steps", "3", "--per-digit", "1",
                      "--reference-steps", "20", "--write")
    assert result.returncode == 0, result.stderr
    fitted = re.search(r"^fitted timesteps \[([\d, ]+)\]: error ([\d.]+) -> ([\d.]+)", result.stdout, re.M)
    assert fitted, result.stdout
    timesteps = [int(t) for t in fitted[1].split(", ")]
    tuned = Pipeline.load(copy, device="cpu")
    config = tuned.sampling_config
    assert (config.steps, list(config.timesteps)) == (3, timesteps) and tuned.timesteps(3) == timesteps
    assert timesteps != shipped.timesteps(3), "the fit moved the steps it started from"
    recommended = shipped.sampling_config
    assert (config.sampler, config.guidance_scale, config.guidance_interval) == (
        recommended.sampler, recommended.guidance_scale, recommended.guidance_interval)
    fit = tuned.metadata["sampling_fit"]
    assert fit["command"] == f"python -m diffusion.tune --weights {copy} --steps 3 --per-digit 1 --reference-steps 20 --write"
    assert fit["reference_steps"] == 20
    assert fit["samples"] == 10 and (f"{fit['error_before']:.6f}", f"{fit['error_after']:.6f}") == fitted.group(2, 3)
    assert fit["error_after"] < fit["error_before"]
    for name, tensor in shipped.model.state_dict().items():
        assert torch.equal(tensor, tuned.model.state_dict()[name]), name
    assert SHIPPED_WEIGHTS.read_bytes() == before, "only the copy is written"


@pytest.mark.slow  # needs MNIST, and half a minute
def test_classifier_cli_trains_weights_that_read_digits(tmp_path, mnist_root):
    architecture, out = "convnet", tmp_path / "classifier.safetensors"
    result = run_here("-m", "diffusion.classifier", "--data-dir", mnist_root, "--epochs", "2", "--subset", "2048",
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()[:2]] == ["epoch 1/2", "epoch 2/2"]
    printed = float(re.search(rf"^wrote {re.escape(str(out))}: test accuracy ([\d.]+)%", result.stdout, re.M)[1])
    images, labels = load_mnist(mnist_root, train=False)
    predicted, _ = predict(load_classifier(out), to_model_range(images))
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy >= 0.8, "2,048 digits twice: a classifier that reads digits (measured 91%)"
    # Read back as the app reads it (each BatchNorm folded into its convolution): a digit or two at a tie may flip.
    assert abs(100 * accuracy - printed) <= 0.05, "the accuracy printed is that of the weights written"
    _, metadata = load_safetensors(out)
    assert metadata["command"] == f"python -m diffusion.classifier --architecture {architecture} --epochs 2 --seed 0 --subset 2048"
    assert load_classifier(out).architecture == metadata["architecture"] == architecture


@pytest.mark.slow  # needs MNIST
def test_the_second_judge_trains_as_a_resnet_and_the_shipped_one_reads_as_its_file_says(tmp_path, mnist_root):
    out = tmp_path / "resnet.safetensors"
    result = run_here("-m", "diffusion.classifier", "--architecture", "resnet", "--seed", "1", "--data-dir", mnist_root,
                        "--epochs", "1", "--subset", "256", "--out", str(out))
    assert result.returncode == 0, result.stderr
    _, metadata = load_safetensors(out)
    assert (metadata["architecture"], metadata["augmentation"], metadata["seed"]) == ("resnet", "random_affine", 1)
    assert isinstance(load_classifier(out), ResidualClassifier)
    shipped = load_classifier(RESNET_PATH)
    images, labels = load_mnist(mnist_root, train=False)
    accuracy = (predict(shipped, to_model_range(images))[0] == labels).float().mean().item()
    assert accuracy == pytest.approx(load_safetensors(RESNET_PATH)[1]["test_accuracy"], abs=5e-4)


def test_classifier_cli_without_data_is_one_clear_line(tmp_path):
    result = run_script("-m", "diffusion.classifier", "--data-dir", str(tmp_path / "nothing"), "--out",
                        str(tmp_path / "c.safetensors"),
                        env={"PATH": "", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "could not be downloaded" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "c.safetensors").exists()
