"""The recorded training run that ships in weights/learning/, its snapshots, and the "How it
learned" tab over them."""

import shutil

import gradio as gr
import numpy as np
import pytest
import torch

from diffusion import WeightsError, media
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.io import load_safetensors
from diffusion.progress import RECORDED_RUN, load_snapshot, read_rows, snapshot_path, snapshot_steps, ten_digits
from webapp import learned
from webapp.learned import Learned
from webapp.shared import Context

from .test_app import decode, top_half

SNAPSHOT_BUDGET = 16_000_000  # bytes, all the snapshots together


def test_the_recorded_run_ships_within_its_budget_each_snapshot_saying_where_it_stands():
    steps = snapshot_steps()
    assert len(steps) >= 3, f"the recorded run's snapshots are missing from {RECORDED_RUN}"
    assert sum(snapshot_path(step).stat().st_size for step in steps) <= SNAPSHOT_BUDGET
    history = read_rows(RECORDED_RUN / "loss.csv")
    assert [row["step"] for row in history] == list(range(1, steps[-1] + 1)), "a row per step of the run"
    losses = []
    for step in steps:
        tensors, metadata = load_safetensors(snapshot_path(step))
        training = metadata["training"]
        assert training["step"] == step and training["command"].startswith("python train.py")
        assert "--snapshots" in training["command"] and "CPU" in training["hardware"]
        assert {t.dtype for t in tensors.values()} == {torch.float16}
        losses.append(training["loss"])
    known = [loss for loss in losses if loss is not None]
    assert known == sorted(known, reverse=True), "the loss falls from snapshot to snapshot"


def test_the_snapshots_go_from_noise_to_digits_read_as_asked():
    classifier = load_classifier()
    steps = snapshot_steps()
    right = []
    for step in (steps[0], steps[-1]):
        pipe = load_snapshot(step)
        images = pipe.generate(pipe.settings(list(range(10)), seed=0))
        right.append(int((class_probabilities(classifier, images).argmax(1) == torch.arange(10)).sum()))
    assert right[0] <= 3 and right[1] >= 9, right


def test_a_missing_snapshot_names_the_ones_there_and_a_damaged_one_how_to_get_it_back(tmp_path):
    folder = tmp_path / "learning"
    shutil.copytree(RECORDED_RUN, folder)
    first, *_, last = snapshot_steps(folder)
    with pytest.raises(WeightsError, match=f"no snapshot at step 7 in .*the steps there: {first}, .*{last}"):
        load_snapshot(7, folder)
    damaged = snapshot_path(last, folder)
    damaged.write_bytes(damaged.read_bytes()[:1000])
    with pytest.raises(WeightsError) as caught:
        load_snapshot(last, folder)
    message = str(caught.value)
    assert "\n" not in message and str(damaged) in message and f"git checkout -- {damaged}" in message


@pytest.fixture
def tab(shipped_pipeline, tmp_path) -> Learned:
    return Learned(Context(shipped_pipeline, tmp_path))


def test_generate_shows_a_snapshot_denoising_then_looping_and_what_it_reads(tab):
    step = tab.steps[-1]
    updates = list(tab.generate(step, "5", 2))
    pipe = load_snapshot(step)
    settings = pipe.settings([5], seed=2)
    assert len(updates) == settings.steps + 1, "a picture at every step, then the animation"
    picture, status, gif_path, details = updates[-1]
    assert "still" in picture and f"at step {step:,}" in picture["alt"]
    final = media.sample_grid(media.to_uint8(pipe.generate(settings)), 1)
    np.testing.assert_array_equal(top_half(decode(picture["still"])), final)
    assert details == {"step": step, "loss": pytest.approx(details["loss"]), "digits": [5], "read_as": [5]}
    assert status.endswith("the classifier reads it as 5.") and gif_path.endswith(".gif")


def test_every_snapshot_shows_its_ten_digits_and_the_chart_marks_the_one_picked(tab):
    figures, status = tab.every_snapshot()
    assert [f["label"] for f in figures] == [tab.label(step) for step in tab.steps] and status == ""
    rows = [decode(f["src"]) for f in figures]
    distinct = len({row.tobytes() for row in rows})
    assert distinct == len(rows), f"each snapshot's own row: {len(rows)} rows, only {distinct} different"
    for end in (0, -1):  # the first and the last rows, as their snapshots write the ten digits
        pipe = tab.snapshot(tab.steps[end])
        np.testing.assert_array_equal(rows[end], media.grid(media.to_uint8(ten_digits(pipe)), columns=10),
                                      err_msg=f"not the ten digits of the snapshot at step {tab.steps[end]}")
    assert "reads them as 0 1 2 3 4 5 6 7 8 9" in figures[-1]["alt"]
    assert tab.recorded().startswith(f"{tab.steps[-1]:,} steps on ") and "CPU" in tab.recorded()
    chart = tab.chart(tab.steps[1])
    assert chart.count("<circle") == 1 and f"marked: step {tab.steps[1]:,}" in chart


def test_a_damaged_snapshot_is_one_line_and_the_others_still_serve(shipped_pipeline, tmp_path):
    folder = tmp_path / "learning"
    shutil.copytree(RECORDED_RUN, folder)
    damaged = snapshot_path(snapshot_steps(folder)[0], folder)
    damaged.write_bytes(b"not a safetensors file")
    tab = Learned(Context(shipped_pipeline, tmp_path), folder)
    figures, status = tab.every_snapshot()
    assert len(figures) == len(tab.steps) - 1 and str(damaged) in status and "git checkout" in status
    with pytest.raises(gr.Error, match="not a valid safetensors file"):
        list(tab.generate(tab.steps[0], "3", 0))
    *_, details = list(tab.generate(tab.steps[-1], "3", 0))[-1]
    assert details["read_as"] == [3]


def test_without_the_recorded_run_the_tab_says_how_to_get_it_back(shipped_pipeline, tmp_path):
    with gr.Blocks() as page:
        learned.build(Context(shipped_pipeline, tmp_path), tmp_path / "gone")
    [note] = [block for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert "snapshots are missing" in note.value and "git checkout --" in note.value


def test_the_snapshot_apis_list_and_generate(served_app):
    from gradio_client import Client
    client = Client(served_app, verbose=False)
    snapshots = client.predict(api_name="/snapshots")
    assert [s["step"] for s in snapshots] == snapshot_steps()
    gif, details = client.predict(step=snapshots[-1]["step"], digit=7, seed=1, api_name="/snapshot_generate")
    assert details["read_as"] == [7] and gif.endswith(".gif")
    with pytest.raises(Exception, match="no snapshot at step 3 "):
        client.predict(step=3, digit=7, seed=1, api_name="/snapshot_generate")
    with pytest.raises(Exception, match="step must be a whole number, one of the snapshots'"):
        client.predict(step=1.5, digit=7, seed=1, api_name="/snapshot_generate")
    with pytest.raises(Exception, match="digit must be one of"):
        client.predict(step=snapshots[-1]["step"], digit=12, seed=1, api_name="/snapshot_generate")
