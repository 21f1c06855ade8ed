"""Load test: many users at once against a fresh `python app.py` on loopback.

    python -m tests.load                          # 8 users x 10 requests, then 200 one after another
    python -m tests.load --classroom 30 100       # 30 users pressing Generate together; then 100
    python -m tests.load --users 4 --requests 3 --sequential 0
    python -m tests.load --users 0 --sequential 0 --uploads 40   # 40 pictures of 25 megapixels at once

Starts its own server on a free 127.0.0.1 port and stops it at the end; every request has a
time limit and the whole run is bounded. Requests go through Gradio's documented HTTP API
(POST /gradio_api/call/v2/generate, then its stream of server-sent events), as `curl` would, so
that each streamed update is timed as it arrives. The users share this machine's cores with the
server, so they do as little as they can: Python's own http.client, and nothing decoded but the
result.

Each user asks for its own digit and seed at the app's default settings, and every result is
checked against the library's output for the same settings run alone: a request that came
back with someone else's digit, or more than MAX_GREY_LEVELS off, counts as wrong. Prints
completed / wrong / turned away / failed / lost counts, first-update and finish latency
percentiles, the largest difference from running alone, the server's memory (RSS) before and
after and the CPU time it used; exits with status 1 if any request was wrong, failed or was lost.
With --uploads N, N clients at once each upload a picture just under the app's pixel limit and ask
/write_like to write in its hand, as a careless or hostile client could: it prints the server's
peak and final RSS against where it started.
"""

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from diffusion import DEFAULT_WEIGHTS, Pipeline, edit

from .conftest import ROOT, free_port, library_image, wait_until_serving

REQUEST_TIMEOUT_S = 120
MAX_GREY_LEVELS = 2  # the tolerance; the network computes each image the same in any batch, so 0 is expected


@dataclass
class Outcome:
    kind: str  # completed, turned-away, failed or lost (wrong is decided later, by report)
    digit: int
    seed: int
    first_update_s: float | None = None  # from asking to the first streamed picture
    finished_s: float | None = None  # from asking to the result, or to being turned away
    png_url: str | None = None
    message: str = ""


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS), or its peak since the last reset (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024


def cpu_s(pid: int) -> float:
    """The CPU time a process has used, all its threads, in seconds (Linux's /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        user, system = stat.read().rsplit(")", 1)[1].split()[11:13]  # utime, stime: fields 14 and 15
    return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")


def generate(connection: http.client.HTTPConnection, digit: int, seed: int,
             first_update: threading.Event | None = None) -> Outcome:
    """One Generate at the default settings, timed from asking: its first update and its end
    (first_update, if given, is set when it comes)."""
    outcome = Outcome("lost", digit, seed, message="no answer in time")
    started = time.perf_counter()
    try:
        connection.request("POST", "/gradio_api/call/v2/generate", json.dumps({"digit": str(digit), "seed": seed}),
                           {"Content-Type": "application/json"})
        asked = connection.getresponse()
        answer = asked.read()
        if asked.status == 503:  # Gradio's own queue is full
            outcome.kind, outcome.message = "turned-away", json.loads(answer).get("detail", "")
        elif asked.status != 200:
            outcome.kind, outcome.message = "failed", f"HTTP {asked.status}: {answer[:200]!r}"
        else:
            connection.request("GET", f"/gradio_api/call/v2/generate/{json.loads(answer)['event_id']}")
            with connection.getresponse() as stream:
                event = None
                for line in stream:  # server-sent events: "event: ..." then "data: ...", one line each
                    if line.startswith(b"event:"):
                        event = line[len(b"event:"):].strip()
                    elif not line.startswith(b"data:"):
                        continue
                    elif event == b"generating" and outcome.first_update_s is None:
                        outcome.first_update_s = time.perf_counter() - started
                        if first_update:
                            first_update.set()
                    elif event == b"complete":
                        outcome.kind, outcome.png_url = "completed", json.loads(line[len(b"data:"):])[3]["url"]
                    elif event == b"error":
                        outcome.kind, outcome.message = "failed", line[len(b"data:"):].decode().strip()
            if outcome.kind == "lost":  # the server closed the stream before its end
                outcome.kind, outcome.message = "failed", "the stream ended before the result"
    except TimeoutError:
        connection.close()
    except (OSError, http.client.HTTPException) as e:
        outcome.kind, outcome.message = "failed", f"{type(e).__name__}: {e}"
        connection.close()
    outcome.finished_s = time.perf_counter() - started
    return outcome


def connect(url: str, source: str | None = None) -> http.client.HTTPConnection:
    """A connection to url's server, from the address source if given."""
    address = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT_S,
                                      source_address=(source, 0) if source else None)


def user_address(index: int) -> str:
    """A user's own address on this machine (all of 127/8 is loopback), as a user elsewhere has,
    which a proxy can tell apart: 127.0.1.2, 127.0.1.3, ..."""
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


def run_users(url: str, users: int, requests: int, first_seed: int, own_addresses: bool = False,
              first_update: threading.Event | None = None) -> list[Outcome]:
    """users threads, each with its own connection (with own_addresses, from its user_address),
    sending `requests` one after another, all released together."""
    release = threading.Barrier(users)

    def user(index: int) -> list[Outcome]:
        connection = connect(url, user_address(index) if own_addresses else None)
        release.wait()
        try:
            return [generate(connection, (index + r) % 10, first_seed + index * requests + r, first_update)
                    for r in range(requests)]
        finally:
            connection.close()

    with ThreadPoolExecutor(users) as pool:
        return [outcome for outcomes in pool.map(user, range(users)) for outcome in outcomes]


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
    return f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {values[-1]:.2f} s"


def report(title: str, outcomes: list[Outcome], url: str, pipe: Pipeline, rss: tuple[float, float] | None) -> bool:
    """Check each result against the library alone and print the figures. True if none was
    wrong, failed or lost."""
    largest_difference = 0
    for outcome in outcomes:
        if outcome.kind == "completed":
            with urllib.request.urlopen(outcome.png_url) as png:
                served = np.asarray(Image.open(io.BytesIO(png.read())))
            alone = library_image(pipe, [outcome.digit], seed=outcome.seed)
            difference = int(np.abs(served.astype(int) - alone).max()) if served.shape == alone.shape else 255
            largest_difference = max(largest_difference, difference)
            if difference > MAX_GREY_LEVELS:
                outcome.kind, outcome.message = "wrong", f"{difference} grey levels from the same request alone"
    counts = {kind: sum(o.kind == kind for o in outcomes)
              for kind in ("completed", "wrong", "turned-away", "failed", "lost")}
    served = [o for o in outcomes if o.kind in ("completed", "wrong")]
    turned_away = [o.finished_s for o in outcomes if o.kind == "turned-away"]
    print(f"{title}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items()), flush=True)
    print(f"  first update: {percentiles([o.first_update_s for o in served if o.first_update_s is not None])}\n"
          f"  finished:     {percentiles([o.finished_s for o in served])}\n"

          + (f"  turned away after: {percentiles(turned_away)}\n" if turned_away else "")
          + f"  largest difference from the same request alone: {largest_difference} grey levels\n"
          + (f"  server RSS {rss[0]:.0f} MB -> {rss[1]:.0f} MB ({rss[1] - rss[0]:+.0f} MB)" if rss else ""),
          flush=True)
    for outcome in outcomes:
        if outcome.kind in ("wrong", "failed", "lost"):
            print(f"  {outcome.kind}: digit {outcome.digit} seed {outcome.seed}: {outcome.message}")
    return counts["wrong"] == counts["failed"] == counts["lost"] == 0


def measure(title: str, url: str, server: subprocess.Popen, pipe: Pipeline, users: int, requests: int,
            first_seed: int) -> bool:
    rss_before, cpu_before = rss_mb(server.pid), cpu_s(server.pid)
    started = time.perf_counter()
    outcomes = run_users(url, users, requests, first_seed)
    seconds, cpu = time.perf_counter() - started, cpu_s(server.pid) - cpu_before
    ok = report(title, outcomes, url, pipe, (rss_before, rss_mb(server.pid)))
    served = sum(o.kind == "completed" for o in outcomes)
    print(f"  served {served / seconds:.1f} requests/s ({served} in {seconds:.1f} s); the server used {cpu:.1f} "
          f"CPU-seconds, {cpu / seconds:.1f} cores on average", flush=True)
    return ok


def library_alone_s(pipe: Pipeline, images: int) -> float:
    """Seconds the library takes to make `images` digits at the default settings in one batch,
    with nothing else to do: what the machine's cores can do, to compare a classroom's times with."""
    settings = pipe.settings([i % 10 for i in range(images)], seed=0)
    started = time.perf_counter()
    pipe.generate(settings)
    return time.perf_counter() - started


def big_picture(path: Path) -> None:
    """A 3 drawn on a picture just under the app's pixel limit (edit.MAX_PIXELS): a few hundred KB to
    send, for flat paper compresses well, and 100 MB to decode."""
    width = 5000
    picture = Image.new("RGB", (width, edit.MAX_PIXELS // width - 1), "white")
    ImageDraw.Draw(picture).text((1000, 500), "3", fill="black", font_size=3000)
    picture.save(path)


def upload(url: str, path: Path) -> str:
    """The server's path of a file uploaded as the API's clients do (POST /gradio_api/upload)."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + path.read_bytes() + b"\r\n--b--\r\n")
    asking = urllib.request.Request(url + "gradio_api/upload", body, {"Content-Type": "multipart/form-data; boundary=b"})
    with urllib.request.urlopen(asking, timeout=REQUEST_TIMEOUT_S) as answer:
        return json.loads(answer.read())[0]


def write_like(url: str, server_path: str) -> str:
    """/write_like on an uploaded picture: "completed", or the error's message."""
    connection = connect(url)
    try:
        picture = {"path": server_path, "meta": {"_type": "gradio.FileData"}}
        connection.request("POST", "/gradio_api/call/v2/write_like", json.dumps({"picture": picture, "number": "12"}),
                           {"Content-Type": "application/json"})
        event_id = json.loads(connection.getresponse().read())["event_id"]
        connection.request("GET", f"/gradio_api/call/v2/write_like/{event_id}")
        with connection.getresponse() as stream:
            events = stream.read().decode().split("\n")
        return "completed" if "event: complete" in events else " ".join(events)[:300]
    finally:
        connection.close()


def measure_uploads(url: str, server: subprocess.Popen, clients: int) -> bool:
    """`clients` big pictures uploaded, then written in at once: the server's RSS before, at its peak
    (the kernel's high-water mark, reset first) and after. True if every request completed."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.png"
        big_picture(path)
        server_paths = [upload(url, path) for _ in range(clients)]
        print(f"{clients} uploads of {path.stat().st_size / 1e6:.1f} MB each, {edit.MAX_PIXELS / 1e6:.0f} million "
              "pixels less a row", flush=True)
    time.sleep(2)  # the uploads' own memory settles
    before = rss_mb(server.pid)
    with open(f"/proc/{server.pid}/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak RSS (VmHWM) to the RSS now
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda server_path: write_like(url, server_path), server_paths))
    seconds = time.perf_counter() - started
    time.sleep(2)
    peak, after = rss_mb(server.pid, "VmHWM"), rss_mb(server.pid)
    completed = results.count("completed")
    print(f"  {completed} of {clients} written in {seconds:.1f} s\n"
          f"  server RSS {before:.0f} MB, peak {peak:.0f} MB ({peak - before:+.0f} MB), after {after:.0f} MB "
          f"({after - before:+.0f} MB)", flush=True)
    for result in set(results) - {"completed"}:
        print(f"  failed: {result}")
    return completed == clients


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=8, help="users sending requests one after another (0: none)")
    p.add_argument("--requests", type=int, default=10, help="per user")
    p.add_argument("--sequential", type=int, default=200, help="then this many one after another (0: none)")
    p.add_argument("--classroom", type=int, nargs="*", default=[],
                   help="then, for each N given, N users each sending one request, all at once")
    p.add_argument("--uploads", type=int, default=0,
                   help="then this many clients at once write in the hand of a 25-megapixel upload (0: none)")
    args = p.parse_args()
    if min(args.users, args.sequential, args.uploads) < 0 or args.requests < 1 or any(n < 1 for n in args.classroom):
        p.error("--users, --sequential and --uploads must be at least 0, --requests and each --classroom at least 1")

    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    pipe = Pipeline.load(DEFAULT_WEIGHTS, device="cpu")
    try:
        wait_until_serving(url, server)
        run_users(url, 1, 1, first_seed=0)  # warm-up, not counted
        ok = True
        if args.users:
            ok &= measure(f"{args.users} users x {args.requests} requests", url, server, pipe, args.users,
                          args.requests, first_seed=0)
        if args.sequential:
            ok &= measure(f"{args.sequential} requests one after another", url, server, pipe, 1, args.sequential,
                          first_seed=10_000)
        for n, users in enumerate(args.classroom):
            time.sleep(2)  # the previous run's last files and connections settle
            ok &= measure(f"classroom: {users} users at once", url, server, pipe, users, 1,
                          first_seed=20_000 + 1000 * n)
            print(f"  for comparison, the library alone makes their {users} images, as one batch in this "
                  f"process, in {library_alone_s(pipe, users):.2f} s", flush=True)
        if args.uploads:
            ok &= measure_uploads(url, server, args.uploads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
