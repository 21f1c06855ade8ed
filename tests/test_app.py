"""The Gradio app: its handlers called directly, then the running app through gradio_client."""

import base64
import dataclasses
import http.client
import json
import math
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

import webapp
from diffusion import Pipeline, edit, media, morph, write
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.media import enlarge, sample_grid, to_uint8, upscale
from diffusion.samplers import final_image

from webapp.draw import Draw
from webapp.editing import AS_READ, CANVAS_SIZE, Editing
from webapp.forward import Forward
from webapp.generate import Generate, seed_for, step_slider
from webapp.live import Live
from webapp.guidance import GUIDANCE_SCALES_COMPARED, SAMPLES_COMPARED_OF_ONE_DIGIT, Guidance, scales_compared
from webapp.morph import Morph
from webapp.repair import PAINTED, Repair
from webapp.shared import Context
from webapp.write import Write

from .conftest import STUDENT_WEIGHTS, free_port, generate_handlers, library_image, record_labels, rows_of, run_here, wait_until
from .test_edit import three_drawn_in_a_corner
from . import photo_survey
from .test_photos import FixedReading


class FakeClock:
    """A clock that moves on by `tick` seconds each time it is read: the preview's pace, tested
    without depending on how fast this machine computes. 1/64 s is exact in binary."""

    def __init__(self, tick: float = 1 / 64):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class Tabs:
    """Each tab's handlers over one Context, as build_app makes them."""

    def __init__(self, pipe, output_dir, clock):
        context = Context(pipe, output_dir, clock)
        editing = Editing(context)
        self.generate, self.guidance, self.morph = Generate(context), Guidance(context), Morph(context)
        self.forward, self.draw, self.repair = Forward(context), Draw(editing), Repair(editing)
        self.write, self.live = Write(context), Live(context)


@pytest.fixture
def tabs(shipped_pipeline, tmp_path) -> Tabs:
    return Tabs(shipped_pipeline, tmp_path, clock=FakeClock(tick=1.0))  # a second a reading: every step previewed


def decode(data_url: str) -> np.ndarray:
    return iio.imread(base64.b64decode(data_url.split(",", 1)[1]), index=None)


def top_half(frame: np.ndarray) -> np.ndarray:
    """The x_t half of a denoising frame (x_t above a 4 px bar above x0)."""
    return frame[: (frame.shape[0] - 4) // 2]


def test_generate_previews_while_computing_then_plays_the_whole_process(tabs, shipped_pipeline):
    settings = {"guidance_scale": 2.0, "sampler": "ddim", "steps": 8, "seed": 11, "samples_per_digit": 2}
    updates = list(tabs.generate.generate("4", 2.0, "ddim", 8, 11, 2))

    # A preview after each step but the last (this clock says a second passed), then the result.
    assert len(updates) == 7 + 1
    previews = [decode(update[0]["src"]) for update in updates[:-1]]
    assert len({preview.tobytes() for preview in previews}) == 7
    assert [update[1] for update in updates[:-1]] == [f"Step {i} of 8 · {2 * i - 1:.1f} s" for i in range(1, 8)]
    assert all(update[2] is None for update in updates[:-1]), "the downloads come at the end"

    picture, status, gif_path, png_path, seed, _ = updates[-1]
    animation = decode(picture["src"])
    # 8 steps, 6 frames each (5 in between, then the step's own sample), after the starting noise.
    assert len(animation) == 1 + 8 * math.ceil(media.MIN_FRAMES / 8)
    assert len({frame.tobytes() for frame in animation}) == len(animation), "every frame is new"
    x_T = torch.randn((2, 1, 28, 28), generator=torch.Generator().manual_seed(11))
    np.testing.assert_array_equal(top_half(animation[0]), sample_grid(to_uint8(x_T), 1))
    final = library_image(shipped_pipeline, [4], **settings)
    np.testing.assert_array_equal(iio.imread(png_path), final)
    np.testing.assert_array_equal(enlarge(top_half(animation[-1]), media.ANIMATION_SIZE), final)
    # The download is the same animation, upscaled crisply (the page shows it larger).
    gif = iio.imread(gif_path, index=None)
    scale = media.crisp_scale(animation[0].shape, media.GIF_SIZE)
    np.testing.assert_array_equal(gif, np.stack([upscale(frame, scale) for frame in animation]))
    assert picture["width"] == animation.shape[2] * media.crisp_scale(animation[0].shape, media.ANIMATION_SIZE)
    assert Path(gif_path).name == "mnist-digit-4_ddim-8-steps_guidance-2_seed-11_x2.gif"
    assert seed == 11 and not tabs.generate.runs, "a finished run is forgotten"
    for setting in ("Digit 4", "DDIM", "8 steps", "guidance 2", "seed 11", "2 samples per digit", "made in"):
        assert setting in status


def test_live_mode_shows_the_final_image_and_its_reading_only_while_on(tabs, shipped_pipeline):
    settings = ("7", 2.5, "dpmpp", 6, 1)
    assert tabs.live.update(False, *settings, 4, None) == (gr.skip(),) * 3
    picture, status, readings = tabs.live.update(True, *settings, 4, None)
    expected = shipped_pipeline.generate(shipped_pipeline.settings([7], 4, 2.5, "dpmpp", 6))
    np.testing.assert_array_equal(decode(picture["src"]), sample_grid(to_uint8(expected), 1))
    assert picture["caption"] == "The final image (live)" and "guidance 2.5" in picture["alt"]
    assert status.startswith("Live: Digit 7 · ") and "seed 4" in status
    assert [panel["caption"][:2] for panel in readings["panels"]] == ["7:"]
    # Random seed on (no seed): the picture's seed, so that moving a setting changes only that.
    assert "seed 9 " in tabs.live.update(True, *settings, None, 9)[1]
    assert "seed 0 " in tabs.live.update(True, *settings, None, None)[1]
    _, _, readings = tabs.live.update(True, "all ten", 1.5, "dpmpp", 6, 2, 0, None)
    assert [panel["caption"][0] for panel in readings["panels"]] == list("0123456789")
    with pytest.raises(gr.Error, match="guidance_scale"):
        tabs.live.update(True, "7", "abc", "dpmpp", 6, 1, 0, None)


def test_random_seed_is_shown_and_reproduces_the_result(tabs):
    *_, (_, status, _, png, seed, _) = tabs.generate.generate("all ten", 1.5, "dpmpp", 3, None, 1)
    assert isinstance(seed, int) and f"seed {seed} " in status
    *_, (_, _, _, again, same_seed, _) = tabs.generate.generate("all ten", 1.5, "dpmpp", 3, seed, 1)
    assert same_seed == seed
    np.testing.assert_array_equal(iio.imread(again), iio.imread(png))
    # The seed box shows only while random is off, starting at the picture's seed; hidden, it
    # is empty, so that each run picks a seed.
    assert seed_for(False, seed).visible is True and seed_for(False, seed).value == seed
    assert seed_for(False, None).value == 0  # before any picture
    assert seed_for(True, seed).visible is False and seed_for(True, seed).value is None


def test_the_preview_keeps_its_pace_and_the_animation_its_length_on_long_runs(tiny_pipeline, tmp_path):
    # Two clock readings a step, 1/64 s each: 4 steps pass 0.1 s, so a preview every 4th step.
    updates = list(Generate(Context(tiny_pipeline, tmp_path, FakeClock())).generate("1", 1.5, "ddpm", 100, 0, 1))
    previews = [update[1] for update in updates[:-1]]
    assert previews == [f"Step {i} of 100 · {(2 * i - 1) / 64:.1f} s" for i in range(1, 100, 4)]
    animation = decode(updates[-1][0]["src"])
    assert len(animation) == 1 + media.MAX_FRAMES  # x_T, then up to MAX_FRAMES steps: here one a step
    gif = iio.imread(updates[-1][2], index=None)
    assert len(gif) == len(animation)


def test_stop_ends_the_run_at_its_next_step_and_keeps_the_animation_so_far(tabs, shipped_pipeline):
    page, other_page = gr.Request(session_hash="page"), gr.Request(session_hash="other page")
    tabs.generate.start(page)
    updates = tabs.generate.generate("7", 1.5, "ddpm", 1000, 3, 1, page)
    for _ in range(5):
        next(updates)
    tabs.generate.stop(other_page)  # another page's Stop stops nothing here
    next(updates)
    tabs.generate.stop(page)
    *rest, (picture, status, gif_path, png_path, _, readings) = list(updates)
    assert not rest, "no more previews once Stop is pressed"
    assert status.startswith("Stopped at step 7 of 1000") and not tabs.generate.runs
    # x_T, the first step (the animation shows every 10th of 1000), and where it stopped.
    animation = decode(picture["src"])
    assert len(animation) == 3 and len(iio.imread(gif_path, index=None)) == len(animation)
    steps = shipped_pipeline.sample_steps(shipped_pipeline.settings([7], guidance_scale=1.5, sampler="ddpm", steps=1000, seed=3))
    seventh = next(step for step in steps if step.index == 6)
    np.testing.assert_array_equal(top_half(animation[-1]), sample_grid(to_uint8(seventh.x), 1))
    assert Path(gif_path).name.endswith("_stopped-at-step-7.gif")
    assert readings["steps"] == [1], "the chart shows the steps read before Stop: here the first of every 10th"
    assert readings["panels"][0]["caption"] == "7: not over 50% when stopped at step 7 (of 1000 steps)"

    tabs.generate.start(page)
    tabs.generate.stop(page)  # pressed while the request waited for its turn: no model work at all
    [(_, status, *_)] = list(tabs.generate.generate("7", 1.5, "ddim", 50, 3, 1, page))
    assert status == "Stopped before it started." and not tabs.generate.runs


@pytest.mark.parametrize(("digit", "guidance_scale", "sampler", "steps", "samples_per_digit", "message"), [
    ("x", 1.5, "dpmpp", 10, 1, "digit must be one of"),
    ("3", float("nan"), "dpmpp", 10, 1, "guidance_scale must be a number"),
    ("3", -1.0, "dpmpp", 10, 1, "guidance_scale must be a number"),
    ("3", 1.5, "euler", 10, 1, "sampler must be one of"),
    ("3", 1.5, "dpmpp", 0, 1, "steps must be an integer"),
    ("3", 1.5, "dpmpp", 10, 9, "samples per digit go from 1 to 8"),
    ("all ten", 1.5, "ddpm", 1000, 8, "80,000 image-steps"),
])
def test_bad_settings_raise_a_clear_error(tabs, digit, guidance_scale, sampler, steps, samples_per_digit, message):
    with pytest.raises(gr.Error, match=message):
        next(tabs.generate.generate(digit, guidance_scale, sampler, steps, 0, samples_per_digit))


def test_the_guidance_comparison_stops_at_the_largest_scale_a_student_follows(shipped_pipeline):
    student = Pipeline.load(STUDENT_WEIGHTS, device="cpu")
    assert scales_compared(shipped_pipeline) == GUIDANCE_SCALES_COMPARED
    largest = student.sampling_config.guidance_inputs[-1][0]
    assert scales_compared(student) == tuple(w for w in GUIDANCE_SCALES_COMPARED if w <= largest) + (largest,)
    student.settings([3], guidance_scale=largest)  # each is a scale it takes
    student.sampling_config = dataclasses.replace(student.sampling_config, guidance_inputs=((1.0, 1.0), (3.0, 9.0)))
    assert scales_compared(student) == (0.0, 1.0, 1.5, 3.0), "the largest once, where it is one of the scales"


def test_compare_guidance_streams_a_labelled_row_per_scale(tabs, shipped_pipeline, tiny_pipeline, tmp_path):
    updates = list(tabs.guidance.compare_guidance("2", 5))
    assert [len(rows) for rows in updates] == list(range(1, len(GUIDANCE_SCALES_COMPARED) + 1))
    rows = updates[-1]
    labels = [row["label"] for row in rows]
    assert [label.split(" · ")[0] for label in labels] == [f"guidance {w:g}" for w in GUIDANCE_SCALES_COMPARED]
    # Each row says how surely its samples are read as the digit, and how varied they are.
    read_as_asked = [float(re.search(r"read as asked: ([\d.]+)%", label)[1]) for label in labels]
    varieties = [float(re.search(r"variety (\d+)", label)[1]) for label in labels]
    assert read_as_asked[0] < 50 < 95 < min(read_as_asked[2:])  # guidance 0 ignores the digit
    assert varieties[0] > 1.5 * max(varieties[2:])
    pictures = [decode(row["src"]) for row in rows]
    assert len({picture.tobytes() for picture in pictures}) == len(pictures), "each scale should look different"
    expected = sample_grid(to_uint8(shipped_pipeline.generate(shipped_pipeline.settings(
        [2], guidance_scale=1.5, seed=5, samples_per_digit=SAMPLES_COMPARED_OF_ONE_DIGIT,
        guidance_interval=shipped_pipeline.all_timesteps))), 1)
    np.testing.assert_array_equal(pictures[GUIDANCE_SCALES_COMPARED.index(1.5)], expected)
    # The layout of all ten, which needs no trained model.
    all_ten_rows = list(Tabs(tiny_pipeline, tmp_path, FakeClock(tick=1.0)).guidance.compare_guidance("all ten", 5))[-1]
    [all_ten] = {decode(row["src"]).shape for row in all_ten_rows}
    assert all_ten == (32, 10 * 30 + 2), "all ten: a row of ten digits per scale"
    assert all("read as asked" in row["label"] and "variety" not in row["label"] for row in all_ten_rows)


def test_forward_process_looks_inside_the_model_at_each_level(tabs):
    figures = tabs.forward.feature_maps("8", 600, 3)
    assert [f["label"] for f in figures] == ["down 28x28", "down 14x14", "down 7x7", "middle 7x7", "up 7x7",
                                             "up 14x14", "up 28x28"]
    for f in figures:
        level = decode(f["src"])
        side = int(f["label"].split()[-1].split("x")[0])
        assert level.shape == (28, 28) and "digit 8 at t = 600" in f["alt"]
        assert (level.reshape(side, 28 // side, side, 28 // side) == level[::28 // side, ::28 // side][:, None, :, None]).all(), \
            "each of the level's pixels shown as a block"
        assert level.min() == 0 and level.max() == 255


def test_forward_process_noises_in_closed_form_and_estimates_back(tabs, shipped_pipeline):
    def pictures(timestep):
        figures, details = tabs.forward.forward_process("8", timestep, 3)
        assert [f["label"][:3] for f in figures] == ["x_0", "x_t", "the"] and f"t = {timestep}" in details
        return [decode(f["src"]).astype(int) for f in figures]

    clean, noisy, estimate = pictures(0)
    assert np.abs(noisy - clean).mean() < 2, "at t = 0 almost no noise is added"
    assert np.abs(estimate - clean).mean() < 2, "and the estimate recovers the digit"
    clean, noisy, estimate = pictures(999)
    digit_area = np.s_[2:-2, 2:-2]  # inside the grid's black border
    correlation = np.corrcoef(noisy[digit_area].ravel(), clean[digit_area].ravel())[0, 1]
    assert abs(correlation) < 0.1, "at t = T - 1 nothing of x_0 is left"
    # The three pictures are the library's: x_0 from the seed, x_t and the model's one-step estimate
    # from fresh noise (seed + 1). At T - 1 the estimate is the model's guess, not x_0 shown again.
    pipe = shipped_pipeline
    x_0 = pipe.generate(pipe.settings([8], 3))
    x_t, x_0_estimate = pipe.denoise_in_one_step(x_0, pipe.settings([8], 4), 999)
    for what, shown, expected in (("x_0", clean, x_0), ("x_t", noisy, x_t), ("the estimate", estimate, x_0_estimate)):
        np.testing.assert_array_equal(shown, sample_grid(to_uint8(expected), 1), err_msg=f"{what}: not the library's")
    assert np.abs(estimate - clean)[digit_area].mean() > 10, "the estimate is the model's, not the clean digit"


def test_no_page_holds_a_connection_that_would_delay_shutdown(shipped_pipeline):
    # With a gr.State, every page and API client holds a heartbeat stream open, and the server
    # took 5 s to exit after SIGTERM instead of a fraction of one (the container test prints it).
    assert webapp.build_app(shipped_pipeline).get_config_file()["connect_heartbeat"] is False


def test_step_slider_fits_the_sampler(shipped_pipeline):
    assert step_slider("ddpm", shipped_pipeline).maximum == 1000
    dpmpp = step_slider("dpmpp", shipped_pipeline)
    assert (dpmpp.minimum, dpmpp.maximum, dpmpp.value) == (1, 50, shipped_pipeline.sampling_config.steps)


# The app as users run it: `python app.py`, then gradio_client.

def api_generate(client: Client, digit: str, **settings):
    options = {"guidance_scale": 1.5, "sampler": "dpmpp", "steps": 10, "seed": 0, "samples_per_digit": 1} | settings
    return client.predict(digit=digit, **options, api_name="/generate")


def test_api_generate_returns_the_images_and_a_gif(served_app, shipped_pipeline):
    client = Client(served_app, verbose=False)
    for digit, seed in (("3", 1), ("7", 2)):
        picture, status, gif_path, png_path, returned_seed, readings = api_generate(client, digit, seed=seed)
        assert returned_seed == seed and f"seed {seed} " in status
        assert readings["digits"] == [int(digit)] and readings["steps"] == list(range(1, 11))
        assert torch.tensor(readings["probabilities"])[-1, 0].argmax() == int(digit)
        expected = library_image(shipped_pipeline, [int(digit)], seed=seed, guidance_scale=1.5, sampler="dpmpp", steps=10)
        np.testing.assert_array_equal(iio.imread(png_path), expected)
        gif, animation = iio.imread(gif_path, index=None), decode(picture["src"])
        # Each request its own animation, however many came before in the same session.
        assert len(animation) == 1 + 10 * math.ceil(media.MIN_FRAMES / 10)
        scale = media.crisp_scale(animation[0].shape, media.GIF_SIZE)
        np.testing.assert_array_equal(gif, np.stack([upscale(frame, scale) for frame in animation]))
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


def test_an_api_caller_who_passes_a_seed_gets_that_seed_and_every_seed_is_checked(served_app):
    client = Client(served_app, verbose=False)
    first, second = (client.predict(digit="3", seed=42, api_name="/generate") for _ in range(2))
    assert first[4] == second[4] == 42 and "seed 42 " in first[1]
    np.testing.assert_array_equal(iio.imread(first[3]), iio.imread(second[3]))
    assert first[0]["src"] == second[0]["src"], "the same animation"
    chosen = client.predict(digit="3", api_name="/generate")[4]  # no seed: a random one, named
    assert isinstance(chosen, int) and 0 <= chosen < 2**32
    for seed in (-17, 2**80, 3.5, "x"):
        with pytest.raises(Exception, match=re.escape(f"seed must be an integer from 0 to 2^63-1, not {seed!r}")):
            client.predict(digit="3", seed=seed, api_name="/generate")


def test_the_api_describes_its_settings_and_results(served_app):
    """What `Client.view_api()` tells a caller: integer types for integer settings, a name for
    every result, a seed that may be left out; and plain text where text comes back."""
    endpoints = Client(served_app, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    generate = endpoints["/generate"]
    types = {p["parameter_name"]: p["python_type"]["type"] for p in generate["parameters"]}
    assert types["steps"] == types["samples_per_digit"] == types["seed"] == "int"
    [seed] = [p for p in generate["parameters"] if p["parameter_name"] == "seed"]
    assert seed["parameter_has_default"] and seed["parameter_default"] is None  # may be left out: a random seed
    assert [r["label"] for r in generate["returns"]] == ["picture", "status", "Animation (GIF)", "Final image (PNG)", "seed",
                                                        "probabilities"]
    assert [p["parameter_name"] for p in endpoints["/morph"]["parameters"]] == [
        "start_digit", "start_seed", "end_digit", "end_seed", "frames"]
    assert [r["label"] for r in endpoints["/morph"]["returns"]] == ["figures", "reading", "Morph (GIF)"]
    assert [r["label"] for r in endpoints["/morph_point"]["returns"]] == ["figures", "probabilities"]
    forward = endpoints["/forward_process"]
    assert {p["parameter_name"]: p["python_type"]["type"] for p in forward["parameters"]}["timestep"] == "int"
    assert [r["label"] for r in forward["returns"]] == ["figures", "details"]
    for endpoint in endpoints.values():
        assert all(not r["label"].startswith("value_") for r in endpoint["returns"])
    _, details = Client(served_app, verbose=False).predict(digit="3", timestep=500, seed=0, api_name="/forward_process")
    assert details.startswith("t = 500: x_t = ") and not re.search(r"[*`#\\]", details), details


def test_the_compare_and_forward_apis_answer_and_refuse_bad_input_clearly(served_app, shipped_pipeline):
    client = Client(served_app, verbose=False)
    rows = client.predict(digit="3", seed=4, api_name="/compare_guidance")  # the last update: every row
    assert [row["label"].split(" · ")[0] for row in rows] == [f"guidance {w:g}" for w in GUIDANCE_SCALES_COMPARED]
    at_one = shipped_pipeline.generate(shipped_pipeline.settings([3], guidance_scale=1.0, seed=4, guidance_interval=shipped_pipeline.all_timesteps,
                                       samples_per_digit=SAMPLES_COMPARED_OF_ONE_DIGIT))
    np.testing.assert_array_equal(decode(rows[1]["src"]), sample_grid(to_uint8(at_one), 1))

    figures, details = client.predict(digit="3", timestep=999, seed=0, api_name="/forward_process")
    clean = to_uint8(shipped_pipeline.generate(shipped_pipeline.settings([3], seed=0)))
    np.testing.assert_array_equal(decode(figures[0]["src"]), sample_grid(clean, 1))
    assert [figure["label"][:3] for figure in figures] == ["x_0", "x_t", "the"] and details.startswith("t = 999: ")

    refused = [("/compare_guidance", {"digit": "12", "seed": 0}, "digit must be one of"),
               ("/compare_guidance", {"digit": "3", "seed": -1}, "seed must be an integer from 0 to 2^63-1, not -1"),
               ("/compare_guidance", {"digit": "3", "seed": "x"}, "seed must be an integer from 0 to 2^63-1, not 'x'"),
               ("/forward_process", {"digit": "3", "timestep": 1000, "seed": 0},
                "timestep must be an integer from 0 to 999, not 1000"),
               ("/forward_process", {"digit": "3", "timestep": -1, "seed": 0},
                "timestep must be an integer from 0 to 999, not -1"),
               ("/forward_process", {"digit": "3", "timestep": 2.5, "seed": 0},
                "timestep must be an integer from 0 to 999, not 2.5"),
               ("/forward_process", {"digit": "x", "timestep": 10, "seed": 0}, "digit must be one of"),
               ("/forward_process", {"digit": "3", "timestep": 10, "seed": 2**70}, "seed must be an integer from 0"),
               ("/feature_maps", {"digit": "3", "timestep": 1000, "seed": 0},
                "timestep must be an integer from 0 to 999, not 1000")]
    for api_name, inputs, message in refused:
        with pytest.raises(Exception, match=re.escape(message)):
            client.predict(**inputs, api_name=api_name)
    assert client.predict(digit="3", timestep=10, seed=0, api_name="/forward_process")[1].startswith("t = 10: ")
    maps = client.predict(digit="3", timestep=500, seed=0, api_name="/feature_maps")
    assert [figure["label"] for figure in maps][::3] == ["down 28x28", "middle 7x7", "up 28x28"]


def test_bad_input_gets_a_clear_error_and_the_app_serves_on(served_app):
    client = Client(served_app, verbose=False)
    with pytest.raises(Exception, match="steps must be an integer from 1 to 1000"):
        api_generate(client, "3", steps=0)
    with pytest.raises(Exception, match="digit must be one of"):
        api_generate(client, "12")
    with pytest.raises(Exception, match="80,000 image-steps"):
        api_generate(client, "all ten", sampler="ddpm", steps=1000, samples_per_digit=8)
    assert Path(api_generate(client, "3")[2]).suffix == ".gif"


def test_the_morph_api_refuses_bad_input_clearly_and_serves_on(served_app, shipped_pipeline):
    client = Client(served_app, verbose=False)
    ends = {"start_digit": "3", "start_seed": 1, "end_digit": "3", "end_seed": 2}
    with pytest.raises(Exception, match=re.escape("end must be a different digit or seed from the start, not (3, 1)")):
        client.predict(**ends | {"end_seed": 1}, frames=9, api_name="/morph")
    with pytest.raises(Exception, match="frames must be an integer from 3 to 16, not 99"):
        client.predict(**ends, frames=99, api_name="/morph")
    with pytest.raises(Exception, match="point must be a number from 0 to 1, not 2"):
        client.predict(**ends, point=2, api_name="/morph_point")
    figures, readings = client.predict(**ends, point=0.0, api_name="/morph_point")
    expected = to_uint8(shipped_pipeline.generate(shipped_pipeline.settings([3], seed=1)))[0]
    np.testing.assert_array_equal(decode(figures[0]["src"]), expected)
    assert abs(sum(readings["probabilities"][0]) - 1) < 1e-4
    figures, reading, gif_path = client.predict(**ends, frames=3, api_name="/morph")
    assert reading.startswith("The classifier reads the frames as: 3 ") and Path(gif_path).suffix == ".gif"


@pytest.mark.parametrize("inputs, message", [
    (("3", 1, "3", 1, 9), "end must be a different digit or seed from the start, not (3, 1)"),
    (("3", 1, "12", 2, 9), "digit must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, not '12'"),
    (("3", 1, "all ten", 2, 9), "digit must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, not 'all ten'"),
    (("3", 1, "3", -5, 9), "seed must be an integer from 0 to 2^63-1, not -5"),
    (("3", 1, "3", 2, 40), "frames must be an integer from 3 to 16, not 40"),
    (("3", 1, "3", 2, "x"), "frames must be an integer from 3 to 16, not 'x'"),
])
def test_bad_morph_settings_say_what_is_allowed(tabs, inputs, message):
    with pytest.raises(gr.Error, match=re.escape(message)):
        next(tabs.morph.morph(*inputs))


def test_bad_morph_points_say_what_is_allowed(tabs):
    for point in (-0.1, 1.5, float("nan"), "half", None):
        with pytest.raises(gr.Error, match=re.escape(f"point must be a number from 0 to 1, not {point!r}")):
            tabs.morph.morph_point("3", 1, "8", 1, point)


def test_generate_shows_what_the_classifier_reads_live_then_a_chart_per_digit(tabs):
    updates = list(tabs.generate.generate("all ten", 1.5, "ddim", 8, 3, 2))
    bars = updates[0][5]
    assert len(bars["panels"]) == 10 and "step 1 of 8" in bars["heading"]
    assert "the first sample of each digit" in bars["heading"]
    assert all(panel["svg"].count("<rect") == 10 for panel in bars["panels"])
    assert updates[1][5]["panels"][0]["svg"] != bars["panels"][0]["svg"], "the bars change as the steps come"
    final = updates[-1][5]
    assert final["digits"] == list(range(10)) and final["steps"] == list(range(1, 9))
    probabilities = torch.tensor(final["probabilities"])
    assert probabilities.shape == (8, 10, 10)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(8, 10), rtol=0, atol=1e-5)
    assert (probabilities[-1].argmax(1) == torch.arange(10)).all(), "the final images are read as their digits"
    assert len(final["panels"]) == 10, "a chart for each digit"
    for digit, panel in enumerate(final["panels"]):
        assert panel["svg"].count("<polyline") == 10
        assert re.fullmatch(rf"{digit}: passed 50% at step \d \(of 8 steps\)", panel["caption"]), panel["caption"]


def test_morph_streams_the_row_then_loops_it_and_reads_each_frame(tabs, shipped_pipeline):
    updates = list(tabs.morph.morph("3", 0, "8", 0, 5))
    steps = shipped_pipeline.sampling_config.steps
    assert [update[1] for update in updates[:-1]] == [f"Step {i} of {steps}" for i in range(1, steps + 1)]
    figures, reading, gif_path = updates[-1]
    assert reading.startswith("The classifier reads the frames as: 3 ") and " 8 (in brackets" in reading
    looping, row = figures
    frames = to_uint8(morph.morph(shipped_pipeline, *morph.morph_ends(shipped_pipeline, (3, 0), (8, 0)), morph.frame_points(5)))
    np.testing.assert_array_equal(decode(row["src"]), media.grid(frames, columns=5))
    # There and back: 0 1 2 3 4 3 2 1, the ends held (a GIF keeps a repeated frame as one, held longer).
    there_and_back = decode(looping["src"])
    np.testing.assert_array_equal(there_and_back, frames[[0, 1, 2, 3, 4, 3, 2, 1]])
    gif = iio.imread(gif_path, index=None)
    scale = media.crisp_scale(frames[0].shape, media.GIF_SIZE)
    np.testing.assert_array_equal(gif[0], upscale(frames[0], scale))
    assert Path(gif_path).name == "mnist-morph_3-seed-0_to_8-seed-0_5-frames.gif"
    [at_end], readings = tabs.morph.morph_point("3", 0, "8", 0, 1.0)
    np.testing.assert_array_equal(decode(at_end["src"]), frames[-1])
    assert readings["panels"][0]["caption"].startswith("8: ")


@pytest.fixture
def small_queue_app(shipped_pipeline):
    """The app in this process running one request at a time, with room for one waiting; the labels
    of each forward pass are recorded (a request's digit marks its rows), and its Generate handlers are at hand."""
    passes, hook = record_labels(shipped_pipeline.model)
    blocks = webapp.build_app(shipped_pipeline, max_runs_at_once=1, max_queue_size=1)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    passes.clear()  # building the app made the Repair tab's first digit
    yield f"http://127.0.0.1:{port}/", generate_handlers(blocks), passes
    blocks.close()
    hook.remove()


def test_a_full_queue_says_busy_and_stop_really_stops(small_queue_app):
    url, generating, passes = small_queue_app
    running = Client(url, verbose=False).submit("3", 1.5, "ddpm", 1000, 0, 1, api_name="/generate")
    wait_until(lambda: rows_of(passes, 3) > 0, "the first request sampling")
    waiting = Client(url, verbose=False).submit("5", 1.5, "dpmpp", 10, 0, 1, api_name="/generate")
    wait_until(lambda: waiting.status().code.name == "IN_QUEUE", "the second request holding the place in the queue")
    with pytest.raises(Exception, match="Queue is full"):
        api_generate(Client(url, verbose=False), "7")
    assert waiting.status().code.name == "IN_QUEUE"

    running.cancel()
    waiting.result(timeout=120)  # the waiting request runs once the first is stopped
    wait_until(lambda: not generating.runs, "the server closing both runs")
    stopped_at = rows_of(passes, 3)
    assert 1 <= stopped_at < 1000, f"the 1000-step run was stopped before its end ({stopped_at} steps)"
    assert rows_of(passes, 5) == 10, "the waiting request made its 10 steps"
    api_generate(Client(url, verbose=False), "7", steps=2)
    assert rows_of(passes, 3) == stopped_at, "no step of the stopped run came after it was closed"


@pytest.mark.parametrize("args, message", [
    (["--port", "http"], "argument --port: expected a port number from 1 to 65535, not 'http'"),
    (["--port", "{taken}"], "argument --port: port {taken} is in use (by another app.py?); choose another with --port"),
    (["--device", "cuda"], "argument --device: must be one this machine has"),
    (["--device", "tpu"], "argument --device: must be one this machine has"),
    (["--host", "no-such-host.invalid"], "argument --host: cannot resolve 'no-such-host.invalid'"),
    (["--host", "192.0.2.1"], "argument --host: cannot listen on 192.0.2.1"),  # TEST-NET-1: no machine's own
])
def test_a_bad_flag_or_a_taken_port_is_one_line_naming_the_flag(args, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args, message = [a.replace("{taken}", port) for a in args], message.replace("{taken}", port)
        if "cuda" in args and torch.cuda.is_available():
            args[args.index("cuda")] = f"cuda:{torch.cuda.device_count()}"  # one this machine lacks
        result = run_here("app.py", *(["--port", port] if "--port" not in args else []), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Loading" not in result.stdout, "refused before the weights load"


def test_startup_says_what_it_is_doing_and_where_it_serves(served_app, served_app_log):
    """`python app.py --mcp`, as served_app started it: each stage in a line, then where it serves,
    and nothing else but where the tools for assistants are."""
    serving = f"Serving on {served_app} (Ctrl-C stops it)"
    wait_until(lambda: serving in served_app_log.read_text(), "the line saying where the app serves")
    lines = served_app_log.read_text().splitlines()
    assert lines[0].startswith("Starting the MNIST diffusion demo: loading PyTorch and Gradio")
    assert lines[1].startswith("Loading ") and "mnist-diffusion.safetensors" in lines[1]
    assert lines[2] == "Loaded the model on cpu."
    assert [line for line in lines[3:lines.index(serving)] if line.strip()] == [
        "🔨 Launching MCP server:", f"* Streamable HTTP URL: {served_app}gradio_api/mcp/"]
    assert "share=True" not in "\n".join(lines)


def as_28x28(png_path: str) -> np.ndarray:
    """An edit's 28x28 result, from its PNG (enlarged crisply by a whole number)."""
    png = iio.imread(png_path)
    scale = png.shape[0] // 28
    return png[::scale, ::scale]


def read_as(png_path: str) -> int:
    """The digit the classifier reads an edit's PNG as."""
    image = torch.from_numpy(as_28x28(png_path)).float().div(127.5).sub(1)[None, None]
    return int(class_probabilities(load_classifier(), image).argmax())


def test_the_draw_and_repair_apis_finish_a_picture_and_answer_bad_input_clearly(served_app, tmp_path):
    client = Client(served_app, verbose=False)

    def upload(name: str, image: Image.Image | bytes) -> dict:
        path = tmp_path / name
        path.write_bytes(image) if isinstance(image, bytes) else image.save(path)
        return handle_file(str(path))

    three = upload("three.png", three_drawn_in_a_corner())
    png, gif, details = client.predict(three, None, 0.7, 0, api_name="/finish_drawing")
    assert (details["picture_read_as"], details["digit"], read_as(png)) == (3, 3, 3)
    assert Path(gif).suffix == ".gif" and len(iio.imread(gif, index=None)) >= media.MIN_FRAMES
    png, gif, details = client.predict(three, 8, 0.9, 0, api_name="/finish_drawing")
    assert details["digit"] == 8 and read_as(png) == 8, "a drawn 3 made an 8"

    bottom, left = Image.new("L", (800, 800)), Image.new("L", (800, 800))
    bottom.paste(255, (0, 255, 800, 800))
    left.paste(255, (0, 0, 190, 800))  # the 3's open side: filled in, it closes into an 8
    for digit, painted in ((None, bottom), (8, left)):  # None: the digit the picture reads as, a 3
        model_input, mask = edit.to_model_input(three_drawn_in_a_corner(), painted)
        given, kept = to_uint8(model_input)[0].astype(int), ~mask[0, 0].numpy()
        png, gif, details = client.predict(three, upload("mask.png", painted), digit, 0, api_name="/repair_digit")
        repaired = as_28x28(png).astype(int)
        assert np.abs(repaired - given)[kept].max() <= 1, "the kept part is kept"
        assert np.abs(repaired - given)[~kept].max() > 64, "the painted part is made anew"
        assert read_as(png) == details["digit"] == (digit or 3), f"repaired as {digit or 3}"

    bad_draws = [
        (upload("white.png", Image.new("RGB", (300, 300), "white")), 0.7, "the picture is empty or one flat colour"),
        (upload("black.png", Image.new("L", (300, 300))), 0.7, "the picture is empty or one flat colour"),
        (upload("blank-page.jpg", photo_survey.blank_photo("ruled paper", np.random.default_rng(0))), 0.7,
         "the picture is empty or one flat colour, or its marks take less than 15% of the paper's light"),
        (upload("huge.png", Image.new("1", (10_000, 10_000))), 0.7, "10,000 x 10,000 pixels; pictures may have up to"),
        (upload("notes.png", b"not a picture at all"), 0.7, "not a picture this app can read"),
        (three, 0, "strength must be a number above 0 and at most 1, not 0"),
        (three, 1.5, "strength must be a number above 0 and at most 1, not 1.5"),
    ]
    for picture, strength, message in bad_draws:
        with pytest.raises(Exception, match=re.escape(message)):
            client.predict(picture, None, strength, 0, api_name="/finish_drawing")
    with pytest.raises(Exception, match="digit must be a whole number from 0 to 9, not 12"):
        client.predict(three, 12, 0.7, 0, api_name="/finish_drawing")
    everything, nothing = Image.new("L", (800, 800), 255), Image.new("L", (800, 800), 0)
    for mask, message in ((upload("nothing.png", nothing), "mask must be painted over the part to fill in"),
                          (upload("everything.png", everything), "(it covers everything)")):
        with pytest.raises(Exception, match=re.escape(message)):
            client.predict(three, mask, None, 0, api_name="/repair_digit")
    _, _, details = client.predict(three, None, 0.7, 0, api_name="/finish_drawing")
    assert details["digit"] == 3, "the next request is served"


def test_a_photo_turned_by_its_exif_tag_is_drawn_upright(served_app, tmp_path):
    """Phones store a photo as the sensor saw it and say in EXIF how to turn it: an upload of a 3
    stored on its side with that tag is finished exactly as the same 3 stored upright."""
    upright, turned = tmp_path / "upright.png", tmp_path / "turned.png"
    three = three_drawn_in_a_corner()
    three.save(upright)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to show
    three.transpose(Image.Transpose.ROTATE_90).save(turned, exif=exif)
    client = Client(served_app, verbose=False)
    results = [client.predict(handle_file(str(path)), None, 0.7, 0, api_name="/finish_drawing") for path in (upright, turned)]
    (png, _, details), (turned_png, _, turned_details) = results
    assert turned_details["picture_read_as"] == details["picture_read_as"] == 3
    np.testing.assert_array_equal(iio.imread(turned_png), iio.imread(png))


def test_draw_and_repair_say_what_to_do_with_an_empty_canvas_or_no_mask(tabs, tmp_path):
    with pytest.raises(gr.Error, match="the canvas is empty: draw a digit first"):
        next(tabs.draw.draw_on_canvas({"background": None, "layers": [], "composite": None}, AS_READ, 0.7, 0))
    editor = tabs.repair.repair_start("3", 0)
    with pytest.raises(gr.Error, match="there is no picture to repair"):
        next(tabs.repair.repair_in_editor(None, PAINTED, AS_READ, 0))
    assert editor["background"].shape == (CANVAS_SIZE, CANVAS_SIZE) and not editor["layers"]
    with pytest.raises(gr.Error, match="finish a drawing in the Draw tab first"):
        tabs.repair.repair_from_file(None)
    picture = tmp_path / "digit.png"
    Image.fromarray(editor["background"]).save(picture)
    unpainted = tabs.repair.repair_from_file({"path": str(picture)})
    assert unpainted == {"background": str(picture), "layers": [], "composite": None}
    with pytest.raises(gr.Error, match=r"paint over the part of the digit to fill in \(or pick a part\)"):
        next(tabs.repair.repair_in_editor({**unpainted, "background": {"path": str(picture)}}, PAINTED, AS_READ, 0))
    with pytest.raises(gr.Error, match="the part to fill in must be one of top half, bottom half"):
        next(tabs.repair.repair_in_editor({**unpainted, "background": {"path": str(picture)}}, "middle", AS_READ, 0))


def test_without_a_pointer_draw_starts_from_a_generated_digit_and_repair_fills_a_chosen_part(tabs, tmp_path):
    """The keyboard's way through Draw and Repair: a generated digit as ink on paper on the canvas,
    and a half of the picture chosen rather than painted; the other half is kept."""
    canvas = tabs.draw.editing.example("7", 0)
    drawing = canvas["composite"]
    assert drawing.shape == (CANVAS_SIZE, CANVAS_SIZE) and canvas["background"] is drawing
    assert np.median(drawing) >= 250 and drawing.min() < 64, "dark ink on white paper, as drawn on the canvas"
    picture = tmp_path / "digit.png"
    Image.fromarray(tabs.repair.repair_start("3", 0)["background"]).save(picture)
    editor = {"background": {"path": str(picture)}, "layers": [], "composite": None}
    *_, (figures, _, status, _, png_path) = tabs.repair.repair_in_editor(editor, "bottom half", "3", 0)
    assert status.startswith("Repaired as a 3")
    kept, to_fill = decode(figures[0]["src"]), decode(figures[1]["src"])
    assert kept[20:].max() == 0 and kept[:12].max() > 0, "the bottom half is blanked to be filled, the top kept"
    assert (to_fill[20:] != np.repeat(kept[20:, :, None], 3, axis=2)).any(), "the bottom half tinted"


def test_write_streams_a_number_in_one_hand_then_loops_it_and_says_what_it_reads(tabs, shipped_pipeline):
    updates = list(tabs.write.write_number("20 26", 3))
    first, *_, (figures, shown, status, gif_path, png_path, seed) = updates
    assert first[2].startswith("Step 1 of 9") and first[3] is None and "src" in first[1] and "still" not in first[1]
    assert status.startswith("20 26 in the hand of seed 3: written in") and "reads it as 2 0 2 6" in status
    assert "its hand: " in status and seed == 3
    pipe = shipped_pipeline
    written = write.line(final_image(write.write_steps(pipe, pipe.settings([2, 0, 2, 6], 3))), [2])
    np.testing.assert_array_equal(iio.imread(png_path), upscale(written, write.LINE_SCALE))
    assert decode(figures[-1]["src"]).shape == written.shape and "reads 2 0 2 6" in figures[-1]["alt"]
    frames = iio.imread(gif_path, index=None)
    assert len(frames) >= media.MIN_FRAMES and shown["still"] and "looping" in shown["alt"]
    *_, (_, _, _, _, _, new_seed) = tabs.write.write_number("20 26")  # Another hand: a new seed
    *_, (_, _, _, _, other_png, _) = tabs.write.write_number("20 26", new_seed)
    assert new_seed != 3 and not np.array_equal(iio.imread(other_png), iio.imread(png_path))


def test_write_in_your_hand_shows_your_digit_beside_the_line_it_led_to(tabs, tmp_path):
    def canvas_of(digit: str) -> dict:
        """A canvas holding a generated digit (seed 0), as a drawing of it."""
        picture = tmp_path / f"drawn-{digit}.png"
        Image.fromarray(tabs.write.editing.example(digit, 0)["composite"]).save(picture)
        return {"background": None, "layers": [], "composite": {"path": str(picture)}}

    canvas = canvas_of("7")
    *_, (figures, _, status, gif_path, png_path) = tabs.write.write_yours(canvas, AS_READ, "0123456789")
    assert status.startswith("0123456789 in the hand of your 7: written in") and "reads it as 0 1 2 3 4 5 6 7 8 9" in status
    yours, line = figures
    assert yours["label"] == "your 7" and "your digit, a 7" in yours["alt"] and "leaning" in yours["alt"] + "slant"
    assert decode(yours["src"]).shape == (28, 28) and decode(line["src"]).shape == (32, 10 * 30 + 2)
    written = iio.imread(png_path)  # read now: the next line's download may have the same name
    # Another drawing (a 1, as the classifier reads it) said to be a 7: the same number and digit,
    # so only the drawing differs, and the line written from it must too.
    *_, (figures, _, status, _, other_png) = tabs.write.write_yours(canvas_of("1"), "7", "0123456789")
    assert status.startswith("0123456789 in the hand of your 7"), "the digit you say you drew is the one inverted"
    assert not np.array_equal(decode(figures[0]["src"]), decode(yours["src"])), "your digit, as drawn"
    assert not np.array_equal(decode(figures[1]["src"]), decode(line["src"])), "the line is written from your drawing"
    assert not np.array_equal(iio.imread(other_png), written), "and so is its download"


@pytest.mark.parametrize("number, message", [
    ("", "type a number to write: 1 to 12 digits, 0 to 9, with spaces between them if you like"),
    ("20x6", "a number may hold only the digits 0 to 9 and spaces, not 'x'"),
    ("1234567890123", "that is 13 digits; this writes up to 12"),
])
def test_write_says_what_a_number_may_hold_and_serves_on(tabs, number, message):
    with pytest.raises(gr.Error, match=re.escape(message)):
        next(tabs.write.write_number(number, 0))
    *_, (_, _, status, _, _, _) = tabs.write.write_number("2026", 0)
    assert "reads it as 2 0 2 6" in status


def test_write_in_your_hand_says_what_to_do_with_an_empty_canvas_or_a_digit_it_cannot_tell(shipped_pipeline, tmp_path):
    handlers = Write(Context(shipped_pipeline, tmp_path, classifier=FixedReading([0.0] * 9 + [1.0])))  # a 9 at 23%
    with pytest.raises(gr.Error, match="the canvas is empty: draw a digit first"):
        next(handlers.write_yours({"background": None, "layers": [], "composite": None}, AS_READ, "12"))
    picture = tmp_path / "three.png"
    three_drawn_in_a_corner().save(picture)
    canvas = {"background": None, "layers": [], "composite": {"path": str(picture)}}
    with pytest.raises(gr.Error, match=r"does not look like a digit: .* or choose the digit you drew\."):
        next(handlers.write_yours(canvas, AS_READ, "12"))
    *_, (_, _, status, _, _) = handlers.write_yours(canvas, "3", "12")
    assert status.startswith("12 in the hand of your 3"), "with the digit chosen, it writes"


def test_the_write_apis_write_a_number_and_answer_bad_input_clearly(served_app, tmp_path):
    client = Client(served_app, verbose=False)
    png, gif, details = client.predict("2026", 5, api_name="/write")
    assert details["digits"] == details["read_as"] == [2, 0, 2, 6] and set(details["hand"]) == {"slant", "stroke width", "size"}
    assert iio.imread(png).shape == (write.LINE_SCALE * 32, write.LINE_SCALE * (4 * 30 + 2))
    assert len(iio.imread(gif, index=None)) >= media.MIN_FRAMES
    three = tmp_path / "three.png"
    three_drawn_in_a_corner().save(three)
    png, gif, details = client.predict(handle_file(str(three)), "0 9", None, api_name="/write_like")
    assert details["digits"] == details["read_as"] == [0, 9]
    for number, message in (("", "type a number to write"), ("12a", "not 'a'"), ("9" * 13, "that is 13 digits")):
        with pytest.raises(Exception, match=re.escape(message)):
            client.predict(number, 0, api_name="/write")
    white = tmp_path / "white.png"
    Image.new("RGB", (200, 200), "white").save(white)
    with pytest.raises(Exception, match="the picture is empty or one flat colour"):
        client.predict(handle_file(str(white)), "12", None, api_name="/write_like")
    with pytest.raises(Exception, match="digit must be one of 0, 1"):
        client.predict(handle_file(str(three)), "12", 12, api_name="/write_like")
    _, _, details = client.predict("2026", 0, api_name="/write")
    assert details["read_as"] == [2, 0, 2, 6], "the next request is served"


def test_the_server_keeps_a_bounded_number_of_sessions(shipped_pipeline):
    """Gradio keeps each session's latest values, and each API call is a session of its own: served
    with the app's launch options, which bound them to SESSIONS_KEPT, more calls than the bound leave
    only that many sessions, each small (webapp.server.SessionStateWithoutDeepLinks). The bound is 10
    here rather than SESSIONS_KEPT (300), for fewer calls."""
    assert webapp.LAUNCH_OPTIONS["state_session_capacity"] == webapp.SESSIONS_KEPT
    kept_here = 10
    blocks = webapp.build_app(shipped_pipeline)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, **{**webapp.LAUNCH_OPTIONS, "state_session_capacity": kept_here})
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(kept_here + 10):
            connection.request("POST", "/gradio_api/call/v2/snapshots", "{}", {"Content-Type": "application/json"})
            event_id = json.loads(connection.getresponse().read())["event_id"]
            connection.request("GET", f"/gradio_api/call/v2/snapshots/{event_id}")
            assert b"event: complete" in connection.getresponse().read()
        assert len(blocks.state_holder.session_data) == kept_here
        kept = sum(len(session.config_values) for session in blocks.state_holder.session_data.values())
        assert kept == 0, "no session keeps a copy of its components' settings and values (for deep links)"
    finally:
        blocks.close()
