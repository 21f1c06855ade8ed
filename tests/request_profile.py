"""Where one request's time goes: the model, the frames, the GIF, PNGs, the rest of the handler, Gradio.

    python -m tests.request_profile               # 30 requests at the defaults, one after another

Serves the app in this process on a free 127.0.0.1 port, as `python app.py` does, and sends the
requests through the HTTP API (as tests.load does). Wrappers around the functions that do each
part add up their time; what the user waited beyond the handler is Gradio's and HTTP's. Prints the
milliseconds of each part per request and its share of the wait.
"""

import argparse
import functools
import http.client
import time
from collections import defaultdict

import webapp
from diffusion import Pipeline, batching, media
from webapp.generate import Generate

from .conftest import free_port
from .load import generate

PARTS = {  # part: the functions whose time it is
    "model (forward passes)": [(batching.SharedModel, "run")],
    "animation frames": [(media, "denoising_frames")],
    "GIF encoding (page and download)": [(media, "gif_bytes")],
    "PNG encoding (preview and download)": [(media, "png_data_url"), (media, "save_png")],
}


def timed(totals: dict, part: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - started
    return wrapper


def timed_stream(totals: dict, generate_handler):
    """Generate.generate, its time summed over each of its updates (Gradio pulls them one by one)."""
    @functools.wraps(generate_handler)
    def wrapper(*args, **kwargs):
        updates = generate_handler(*args, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                update = next(updates)
            except StopIteration:
                return
            finally:
                totals["handler"] += time.perf_counter() - started
            yield update
    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.request_profile", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=30)
    args = p.parse_args()
    totals = defaultdict(float)
    for part, functions in PARTS.items():
        for owner, name in functions:
            setattr(owner, name, timed(totals, part, getattr(owner, name)))
    Generate.generate = timed_stream(totals, Generate.generate)

    blocks = webapp.build_app(Pipeline.load(device="cpu", shared=True))
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for seed in range(3):  # warm-up, not counted
            generate(connection, seed % 10, seed)
        totals.clear()
        waited = sum(generate(connection, seed % 10, seed).finished_s for seed in range(100, 100 + args.requests))
    finally:
        connection.close()
        blocks.close()

    per_request = {part: totals[part] / args.requests for part in PARTS}
    handler_rest = totals["handler"] / args.requests - sum(per_request.values())
    per_request["rest of the handler (sampler arithmetic, files, ...)"] = handler_rest
    per_request["Gradio and HTTP (the wait beyond the handler)"] = (waited - totals["handler"]) / args.requests
    wait = waited / args.requests
    print(f"One request at the defaults (one digit), {args.requests} in a row: {1000 * wait:.0f} ms from asking to the "
          "result")
    for part, seconds in per_request.items():
        print(f"  {part:55s} {1000 * seconds:6.1f} ms  {seconds / wait:4.0%}")


if __name__ == "__main__":
    main()
