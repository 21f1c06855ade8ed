"""The Gradio app: its handlers called directly, then the running app through gradio_client."""

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from gradio_client import Client

import app
from diffusion.media import crisp_scale, sample_grid, to_uint8, upscale

from .conftest import free_port, run_script


@pytest.fixture
def demo(shipped_pipeline, tmp_path) -> app.Demo:
    return app.Demo(shipped_pipeline, tmp_path)


def decode(data_url: str) -> np.ndarray:
    return iio.imread(base64.b64decode(data_url.split(",", 1)[1]))


def library_image(pipe, digits: list[int], **settings) -> np.ndarray:
    """What the library gives for these settings, laid out and upscaled as the app shows it."""
    grid = sample_grid(to_uint8(pipe.generate(digits, **settings)), len(digits))
    return upscale(grid, crisp_scale(grid.shape[1]))


def test_generate_streams_every_step_then_the_library_result(demo, shipped_pipeline):
    updates = list(demo.generate("4", 2.0, "ddim", 8, 11, False, 2))

    assert len(updates) == 8 + 1  # one update per step, then the final one
    frames = [decode(update[0]) for update in updates[:-1]]
    assert len({frame.tobytes() for frame in frames}) == 8, "each step should show a new frame"
    assert all(update[1] is None for update in updates[:-1]), "the result appears only at the end"
    frame, final, gif_path, png_path, details, seed = updates[-1]
    expected = library_image(shipped_pipeline, [4], guidance_scale=2.0, sampler="ddim", steps=8, seed=11,
                             samples_per_digit=2)
    np.testing.assert_array_equal(final, expected)
    np.testing.assert_array_equal(iio.imread(png_path), final)
    gif = iio.imread(gif_path, index=None)
    scale = crisp_scale(frames[0].shape[1], app.GIF_WIDTH)
    np.testing.assert_array_equal(gif, np.stack([upscale(frame, scale) for frame in frames]))
    np.testing.assert_array_equal(decode(frame), frames[-1])
    assert Path(gif_path).name == "mnist-digit-4_ddim-8-steps_guidance-2_seed-11_x2.gif"
    assert seed == 11
    for setting in ("Digit 4", "DDIM", "8 steps", "guidance 2", "seed 11", "2 per digit"):
        assert setting in details


def test_random_seed_is_shown_and_reproduces_the_result(demo):
    *_, (_, final, _, _, _, seed) = demo.generate("all ten", 1.5, "dpmpp", 3, 0, True, 1)
    assert isinstance(seed, int) and seed != 0
    *_, (_, again, _, _, _, same_seed) = demo.generate("all ten", 1.5, "dpmpp", 3, seed, False, 1)
    assert same_seed == seed
    np.testing.assert_array_equal(again, final)


def test_long_runs_stream_throttled_while_the_gif_holds_the_whole_process(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "STREAM_EVERY_STEP_UP_TO", 10)
    monkeypatch.setattr(app, "MAX_GIF_FRAMES", 25)
    updates = list(app.Demo(tiny_pipeline, tmp_path).generate("1", 1.5, "ddpm", 100, 0, False, 1))

    # The tiny model takes about a millisecond a step, so at 20 updates a second most steps are not streamed.
    assert 2 <= len(updates) < 50
    gif = iio.imread(updates[-1][2], index=None)
    last_frame = decode(updates[-1][0])
    assert len(gif) == 25
    np.testing.assert_array_equal(gif[-1], upscale(last_frame, crisp_scale(last_frame.shape[1], app.GIF_WIDTH)))


@pytest.mark.parametrize(("digit", "guidance_scale", "sampler", "steps", "samples_per_digit", "message"), [
    ("x", 1.5, "dpmpp", 10, 1, "digit must be one of"),
    ("3", float("nan"), "dpmpp", 10, 1, "guidance_scale must be a number"),
    ("3", -1.0, "dpmpp", 10, 1, "guidance_scale must be a number"),
    ("3", 1.5, "euler", 10, 1, "sampler must be one of"),
    ("3", 1.5, "dpmpp", 0, 1, "steps must be an integer"),
    ("3", 1.5, "dpmpp", 10, 9, "samples per digit go from 1 to 8"),
    ("all ten", 1.5, "ddpm", 1000, 8, "80,000 image-steps"),
])
def test_bad_settings_raise_a_clear_error(demo, digit, guidance_scale, sampler, steps, samples_per_digit, message):
    with pytest.raises(gr.Error, match=message):
        next(demo.generate(digit, guidance_scale, sampler, steps, 0, False, samples_per_digit))


def test_compare_guidance_shows_the_same_seed_at_each_scale(demo, shipped_pipeline):
    pictures = demo.compare_guidance("2", 5)
    assert [caption for _, caption in pictures] == [f"guidance {w:g}" for w in app.GUIDANCE_SCALES_COMPARED]
    assert len({picture.tobytes() for picture, _ in pictures}) == len(pictures), "each scale should look different"
    at_1_5 = pictures[app.GUIDANCE_SCALES_COMPARED.index(1.5)][0]
    expected = sample_grid(to_uint8(shipped_pipeline.generate([2], guidance_scale=1.5, seed=5)), 1)
    np.testing.assert_array_equal(at_1_5, upscale(expected, crisp_scale(expected.shape[1], 160)))


def test_forward_process_noises_in_closed_form_and_estimates_back(demo):
    clean, noisy, estimate, details = demo.forward_process("8", 0, 3)
    assert np.abs(noisy.astype(int) - clean).mean() < 2, "at t = 0 almost no noise is added"
    assert np.abs(estimate.astype(int) - clean).mean() < 2, "and the estimate recovers the digit"
    clean, noisy, estimate, details = demo.forward_process("8", 999, 3)
    digit_area = np.s_[16:-16, 16:-16]  # inside the grid's black border (2 px, upscaled 8x)
    correlation = np.corrcoef(noisy[digit_area].ravel(), clean[digit_area].ravel())[0, 1]
    assert abs(correlation) < 0.1, "at t = T - 1 nothing of x_0 is left"
    assert "t = 999" in details


def test_step_slider_fits_the_sampler(shipped_pipeline):
    assert app.step_slider("ddpm", shipped_pipeline).maximum == 1000
    dpmpp = app.step_slider("dpmpp", shipped_pipeline)
    assert (dpmpp.minimum, dpmpp.maximum, dpmpp.value) == (1, 50, shipped_pipeline.sampling_config.steps)


# The app as users run it: `python app.py`, then gradio_client.

def api_generate(client: Client, digit: str, **settings):
    options = {"guidance_scale": 1.5, "sampler": "dpmpp", "steps": 10, "seed": 0, "randomize_seed": False,
               "samples_per_digit": 1} | settings
    return client.predict(digit=digit, **options, api_name="/generate")


def test_api_generate_returns_the_images_and_a_gif(served_app, shipped_pipeline):
    client = Client(served_app, verbose=False)
    for digit, seed in (("3", 1), ("7", 2)):
        frame, result, gif_path, png_path, details, returned_seed = api_generate(client, digit, seed=seed)
        assert returned_seed == seed
        expected = library_image(shipped_pipeline, [int(digit)], seed=seed, guidance_scale=1.5, sampler="dpmpp", steps=10)
        np.testing.assert_array_equal(iio.imread(result), expected)
        gif = iio.imread(gif_path, index=None)
        frame = decode(frame)
        assert len(gif) == 10 and gif.shape[1:] == upscale(frame, crisp_scale(frame.shape[1], app.GIF_WIDTH)).shape
        assert Path(gif_path).name == f"mnist-digit-{digit}_dpmpp-10-steps_guidance-1.5_seed-{seed}_x1.gif"


def test_four_simultaneous_clients_each_get_their_own_result(served_app, shipped_pipeline):
    requests = [("0", 10), ("5", 11), ("6", 12), ("9", 13)]

    def request(digit_seed):
        digit, seed = digit_seed
        return iio.imread(api_generate(Client(served_app, verbose=False), digit, seed=seed)[3])

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(request, requests))
    for (digit, seed), result in zip(requests, results):
        expected = library_image(shipped_pipeline, [int(digit)], seed=seed, guidance_scale=1.5, sampler="dpmpp", steps=10)
        np.testing.assert_array_equal(result, expected)


def test_bad_input_gets_a_clear_error_and_the_app_serves_on(served_app):
    client = Client(served_app, verbose=False)
    with pytest.raises(Exception, match="steps must be an integer from 1 to 1000"):
        api_generate(client, "3", steps=0)
    with pytest.raises(Exception, match="digit must be one of"):
        api_generate(client, "12")
    with pytest.raises(Exception, match="80,000 image-steps"):
        api_generate(client, "all ten", sampler="ddpm", steps=1000, samples_per_digit=8)
    assert Path(api_generate(client, "3")[2]).suffix == ".gif"


@pytest.fixture
def small_queue_app(shipped_pipeline):
    """The app in this process with room for one waiting request, its model calls counted."""
    calls = []
    hook = shipped_pipeline.model.register_forward_hook(lambda *_: calls.append(time.monotonic()))
    blocks = app.build_app(shipped_pipeline, max_queue_size=1)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", calls
    blocks.close()
    hook.remove()


def test_a_full_queue_says_busy_and_stop_really_stops(small_queue_app):
    url, model_calls = small_queue_app
    running = Client(url, verbose=False).submit("3", 1.5, "ddpm", 1000, 0, False, 1, api_name="/generate")
    while not model_calls:
        time.sleep(0.05)
    waiting = Client(url, verbose=False).submit("5", 1.5, "dpmpp", 10, 0, False, 1, api_name="/generate")
    time.sleep(1)
    with pytest.raises(Exception, match="Queue is full"):
        api_generate(Client(url, verbose=False), "7")
    assert waiting.status().code.name in ("IN_QUEUE", "STARTING", "JOINING_QUEUE")

    running.cancel()
    waiting.result(timeout=120)  # the waiting request runs once the first is stopped
    stopped_at = len(model_calls)
    threading.Event().wait(1.0)
    assert len(model_calls) == stopped_at, "no model calls after the work is done or stopped"
    assert stopped_at < 1000 + 10, "the 1000-step run was stopped before its end"


@pytest.mark.parametrize("weights", ["missing", "corrupt"])
def test_startup_with_bad_weights_stops_with_one_clear_line(tmp_path, weights):
    path = tmp_path / "weights.safetensors"
    if weights == "corrupt":
        path.write_bytes(b"\x00" * 100)
    result = run_script("app.py", "--weights", str(path), "--port", str(free_port()), timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr, result.stderr
    if weights == "missing":
        assert "python train.py" in result.stderr


def test_a_bad_port_is_one_clear_line():
    result = run_script("app.py", "--port", "http", timeout=120)
    assert result.returncode == 2 and "expected a port number" in result.stderr
