"""Holding up: bad values through the public API, damaged weights, a browser that leaves,
a full disk, and what the server must never do (pickle, serve other files, share)."""

import json
import math
import os
import re
import socket
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from safetensors.torch import save_file

import webapp
from diffusion import Pipeline, media
from webapp.generate import Generate
from webapp.shared import Context

from .conftest import (ROOT, SHIPPED_WEIGHTS, free_port, generate_handlers, library_image, record_labels, rows_of,
                       run_here, wait_until)

GOOD = {"digit": "3", "guidance_scale": 1.5, "sampler": "dpmpp", "steps": 6, "seed": 0, "samples_per_digit": 1}

BAD_VALUES = [
    ("digit", -1, "digit must be one of"),
    ("digit", 10, "digit must be one of"),
    ("digit", "x", "digit must be one of"),
    ("digit", None, "digit must be one of"),
    ("guidance_scale", math.nan, "guidance_scale must be a number from 0 to 10"),
    ("guidance_scale", math.inf, "guidance_scale must be a number from 0 to 10"),
    ("guidance_scale", -1, "guidance_scale must be a number from 0 to 10"),
    ("guidance_scale", 1e9, "guidance_scale must be a number from 0 to 10"),
    ("steps", 0, "steps must be an integer from 1 to 1000"),
    ("steps", -5, "steps must be an integer from 1 to 1000"),
    ("steps", 10**7, "steps must be an integer from 1 to 1000"),
    ("seed", -2, "seed must be an integer from 0"),
    ("seed", 2**70, "seed must be an integer from 0"),
    ("seed", "abc", "seed must be an integer from 0"),
    ("seed", 3.5, "seed must be an integer from 0"),
    ("samples_per_digit", 0, "samples_per_digit must be a positive integer"),
    ("samples_per_digit", 10**4, "samples per digit go from 1 to 8"),
    ("sampler", "euler", "sampler must be one of"),
]


def join_queue(http: httpx.Client, api_name: str, inputs: dict) -> str:
    """Send inputs to an endpoint as raw JSON, as any HTTP client can (NaN and Infinity included,
    which gradio_client refuses to encode); returns the session whose events to read."""
    config = http.get("config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    body = {"data": list(inputs.values()), "fn_index": fn_index, "session_hash": session, "event_data": None,
            "trigger_id": None}
    http.post("gradio_api/queue/join", content=json.dumps(body), headers={"content-type": "application/json"}
              ).raise_for_status()
    return session


def events(http: httpx.Client, session: str):
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                yield json.loads(line[len("data:"):])


def generate_raw(url: str, inputs: dict) -> dict:
    """The /generate endpoint's final message for these inputs."""
    with httpx.Client(base_url=url, timeout=120) as http:
        session = join_queue(http, "generate", inputs)
        return next(message for message in events(http, session) if message["msg"] == "process_completed")


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES,
                         ids=[f"{name}={value!r}" for name, value, _ in BAD_VALUES])
def test_each_bad_value_gets_a_clear_error_and_the_next_request_is_served(served_app, name, value, message):
    refused = generate_raw(served_app, {**GOOD, name: value})
    assert not refused["success"] and message in refused["output"]["error"], refused
    served = generate_raw(served_app, GOOD)
    assert served["success"] and served["output"]["data"][2]["path"].endswith(".gif")


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt", "wrong shape"])
def test_damaged_weights_stop_start_up_with_one_clear_line(tmp_path, damage):
    path = tmp_path / "weights.safetensors"
    if damage == "truncated":
        path.write_bytes(SHIPPED_WEIGHTS.read_bytes()[:100_000])
    elif damage == "corrupt":
        path.write_bytes(b"\x00" * 100)
    elif damage == "wrong shape":
        with open(SHIPPED_WEIGHTS, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        metadata = header.pop("__metadata__")
        save_file({name: torch.zeros(3) for name in header}, str(path), metadata)
    result = run_here("app.py", "--weights", str(path), "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr, result.stderr
    if damage == "missing":
        assert "python train.py" in result.stderr, "how to get weights"
    assert "Traceback" not in result.stderr


@pytest.fixture
def in_process_app(shipped_pipeline):
    """The app in this process, sharing forward passes as `python app.py` does. Each forward pass's
    labels are recorded (a request's digit marks its rows; 10, the null label, an unguided row),
    so that a test can tell whose work goes on and whose stops; and its Generate handlers, whose
    `runs` holds each request's run until its generator is closed."""
    threads = torch.get_num_threads()
    pipe = Pipeline(shipped_pipeline.model, shipped_pipeline.schedule, shipped_pipeline.sampling_config, shared=True)
    passes, hook = record_labels(shipped_pipeline.model)
    blocks = webapp.build_app(pipe)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    passes.clear()  # building the app made the Repair tab's first digit, a 3
    yield f"http://127.0.0.1:{port}/", generate_handlers(blocks), passes
    blocks.close()
    hook.remove()
    pipe.denoiser.close()
    torch.set_num_threads(threads)


def wait_until_closed(generating: Generate, session: str) -> None:
    """Wait until the server has closed the request's generator: it can make no further step."""
    wait_until(lambda: session not in generating.runs, "the server closing the run of a browser that had left")


def test_a_browser_that_leaves_mid_generation_stops_the_work(in_process_app):
    url, generating, passes = in_process_app
    with httpx.Client(base_url=url, timeout=30) as http:
        session = join_queue(http, "generate", {**GOOD, "sampler": "ddpm", "steps": 1000})
        for message in events(http, session):  # read until the first streamed frame arrives, then leave
            assert message["msg"] != "process_completed", f"the run ended before streaming: {message}"
            if message["msg"] == "process_generating":
                break
        else:
            pytest.fail("the stream ended without a frame")
    started = rows_of(passes, 3)
    assert started >= 1, "the run had started: a frame streams after its first step"
    wait_until_closed(generating, session)
    made = rows_of(passes, 3)
    assert started <= made < 1000, f"the 1000-step run should stop when the browser leaves, not run on ({made} steps)"
    assert Client(url, verbose=False).predict(**GOOD, api_name="/generate")[2].endswith(".gif")
    assert rows_of(passes, 3) == made + GOOD["steps"], "no step of the run that was left came after it closed"


def test_a_browser_that_leaves_while_another_request_shares_the_model_stops_its_share_only(in_process_app,
                                                                                         shipped_pipeline):
    """Whether their calls land in one forward pass or take turns depends on timing (tests/test_batching.py
    holds a pass to make them share); either way, one request's leaving must not touch the other.
    Their digits tell their rows apart, in shared passes too."""
    url, generating, passes = in_process_app
    leaving = {**GOOD, "guidance_scale": 1.0, "sampler": "ddpm", "steps": 1000}  # a 3, one row a step
    staying = {**GOOD, "digit": "7", "sampler": "ddim", "steps": 60, "seed": 5}  # a 7
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=url, timeout=30) as http:
        session = join_queue(http, "generate", leaving)
        stream = events(http, session)
        next(message for message in stream if message["msg"] == "process_generating")
        stays = pool.submit(generate_raw, url, staying)
        wait_until(lambda: rows_of(passes, 7) > 0, "the staying request sampling")
        stream.close()  # the browser leaves
        wait_until_closed(generating, session)
        left_at = rows_of(passes, 3)
        final = stays.result(timeout=600)
    assert final["success"], final
    assert rows_of(passes, 7) == staying["steps"], "the staying request made all of its steps"
    assert 1 <= left_at < 1000, f"the leaving request's work stopped before its end ({left_at} steps)"
    assert rows_of(passes, 3) == left_at, "and made no step after it was closed"
    expected = library_image(shipped_pipeline, [7], **{key: value for key, value in staying.items() if key != "digit"})
    np.testing.assert_array_equal(iio.imread(final["output"]["data"][3]["path"]), expected)


def test_an_upload_cut_off_midway_is_deleted_and_logged_in_one_line(served_app, served_app_log):
    """A tab closed while its drawing uploads: what had arrived of it is deleted, not kept in the
    upload folder for good, and the server's log says so in one line, without a traceback."""
    marker = uuid.uuid4().hex.encode()
    logged_before = len(served_app_log.read_text())
    uploads = Path(get_upload_folder())

    def arrived() -> bool:
        return any(marker in f.read_bytes() for f in uploads.iterdir() if f.is_file())

    address = urlsplit(served_app)
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="digit.png"\r\n\r\n' + marker * 4096
    with socket.create_connection((address.hostname, address.port)) as sender:
        sender.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n"
                       b"Content-Type: multipart/form-data; boundary=b\r\n\r\n%s" % (address.netloc.encode(), part))
        wait_until(arrived, "the upload's first part in the upload folder")
    wait_until(lambda: "an upload was cut off" in served_app_log.read_text()[logged_before:],
               "a line in the log about the cut-off upload")
    assert not arrived(), "the part that had arrived is deleted"
    logged = served_app_log.read_text()[logged_before:]
    assert "Traceback" not in logged and len(logged.strip().splitlines()) == 1, logged


def test_a_full_disk_is_a_clear_error_and_the_app_serves_on(in_process_app, monkeypatch):
    url, _, _ = in_process_app

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(media, "save_gif", disk_full)
    with pytest.raises(Exception, match="could not be saved for download .No space left on device.*out of disk space"):
        Client(url, verbose=False).predict(**GOOD, api_name="/generate")
    monkeypatch.undo()
    assert Client(url, verbose=False).predict(**GOOD, api_name="/generate")[2].endswith(".gif")


def test_a_morph_that_cannot_be_saved_is_a_clear_error_and_the_app_serves_on(in_process_app, monkeypatch):
    url, _, _ = in_process_app
    ends = {"start_digit": "3", "start_seed": 1, "end_digit": "8", "end_seed": 1, "frames": 3}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(media, "save_animation", disk_full)
    with pytest.raises(Exception, match=re.escape("the morph was made but could not be saved for download "
                                                  "(No space left on device)")):
        Client(url, verbose=False).predict(**ends, api_name="/morph")
    monkeypatch.undo()
    assert Client(url, verbose=False).predict(**ends, api_name="/morph")[2].endswith(".gif")


def test_old_downloads_are_deleted(shipped_pipeline, monkeypatch):
    """Frames, GIFs and PNGs are pruned from Gradio's cache on a schedule: they cannot pile up. The
    sweep Gradio runs on that schedule is called here with its clock moved on, rather than waited for."""
    from gradio import route_utils

    ttl = 3600
    blocks = webapp.build_app(shipped_pipeline, cache_ttl_s=ttl)
    assert blocks.delete_cache == (600, ttl), "swept every 10 minutes, deleting what is older than the TTL"
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        _, _, gif, png, _, _ = client.predict(**GOOD, api_name="/generate")
        made = [Path(gif["path"]), Path(png["path"])]  # on the server, where the app wrote them
        assert all(path.exists() for path in made)
        route_utils.delete_files_created_by_app(blocks, ttl)
        assert all(path.exists() for path in made), "a fresh download is kept"

        class Later(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=ttl + 1)

        monkeypatch.setattr(route_utils, "datetime", Later)
        route_utils.delete_files_created_by_app(blocks, ttl)
        assert not any(path.exists() for path in made), "an hour on, the sweep deletes it"
    finally:
        blocks.close()


def test_downloads_are_written_apart_and_their_emptied_folders_removed(shipped_pipeline, tmp_path):
    """The same settings twice: two folders, each with its own files. Once Gradio's sweep has deleted
    a request's files, its folder goes at a save a minute later (the clock is moved on, not waited for)."""
    now = [0.0]
    context = Context(shipped_pipeline, tmp_path, clock=lambda: now[0])
    frames = [np.full((28, 28), shade, np.uint8) for shade in (0, 255)]
    first, second = (context.save_downloads("mnist-same-name", frames, frames[-1]) for _ in range(2))
    assert first != second and Path(first[0]).parent != Path(second[0]).parent
    for gif, png in (first, second):
        assert Path(gif).name == "mnist-same-name.gif" and Path(png).name == "mnist-same-name.png"
        np.testing.assert_array_equal(iio.imread(png), 255)
        assert len(iio.imread(gif, index=None)) == 2
    for path in first:
        os.remove(path)  # as Gradio's sweep does
    now[0] += 59
    context.save_downloads("mnist-other", frames)
    assert Path(first[0]).parent.is_dir(), "looked for once a minute, not at every save"
    now[0] += 2
    context.save_downloads("mnist-other", frames)
    assert not Path(first[0]).parent.exists() and Path(second[0]).parent.is_dir(), "only the emptied folder goes"


def test_no_pickle_anywhere():
    """Weights are safetensors: no pickle files in the tree, and no code that could load one."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert tracked, "run the tests from a git checkout"
    pickles = [f for f in tracked if f.endswith((".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"))]
    assert not pickles
    forbidden = re.compile(r"\b(import pickle|torch\.load\(|pickle\.loads?\(|cloudpickle|joblib\.load)")
    offenders = [f for f in tracked if f.endswith(".py") and f != "tests/test_faults.py"
                 and forbidden.search((ROOT / f).read_text())]
    assert not offenders


def test_only_the_cache_is_served_and_no_share_link(served_app):
    for path in ["/etc/passwd", str(SHIPPED_WEIGHTS), str(ROOT / "app.py")]:
        response = httpx.get(f"{served_app}gradio_api/file={path}", timeout=10)
        assert response.status_code in (403, 404), (path, response.status_code)
    assert "gradio.live" not in httpx.get(served_app, timeout=10).text


def test_each_user_downloads_their_own_result_and_a_guessed_path_is_not_served(served_app, tmp_path):
    """Two students finish different drawings as a 3 with the same strength and seed, at once: each
    downloads their own result, from a path of its own, and a third with the same drawing as the
    first gets a file of their own too. The readable settings name is what the file is saved as,
    not a path anyone can ask for."""
    pipe = Pipeline.load(SHIPPED_WEIGHTS, device="cpu")
    drawings = []
    for seed in (1, 2):  # two different 3s, in ink on paper as a student draws them
        path = tmp_path / f"three-{seed}.png"
        digit = media.to_uint8(pipe.generate(pipe.settings([3], seed)))[0]
        iio.imwrite(path, 255 - media.enlarge(digit, 280))
        drawings.append(handle_file(str(path)))

    def finish(drawing) -> tuple[str, str]:
        client = Client(served_app, verbose=False, download_files=False)
        png, gif, _ = client.predict(drawing, 3, 0.7, 0, api_name="/finish_drawing")
        return png["path"], gif["path"]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(finish, [*drawings, drawings[0]]))
    pngs = [png for png, _ in results]
    assert len(set(pngs)) == 3 and len({gif for _, gif in results}) == 3, "each request, its own files"
    assert {Path(png).name for png in pngs} == {"mnist-draw_digit-3_strength-0.7_seed-0.png"}, "saved by its settings"
    served = [httpx.get(f"{served_app}gradio_api/file={png}", timeout=30) for png in pngs]
    assert all(response.status_code == 200 for response in served)
    first, second, first_again = (iio.imread(response.content) for response in served)
    assert np.abs(first.astype(int) - second).max() > 64, "the second student's own drawing, not the first's"
    np.testing.assert_array_equal(first_again, first)
    guessed = Path(pngs[0]).parents[1] / Path(pngs[0]).name  # the settings name, without the random folder
    assert httpx.get(f"{served_app}gradio_api/file={guessed}", timeout=10).status_code in (403, 404)
    assert len(Path(pngs[0]).parent.name) >= 22, "128 random bits name the folder"
