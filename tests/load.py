"""Load test: many gradio_client users at once against a fresh `python app.py` on loopback.

    python -m tests.load                          # 8 users x 10 requests, then 200 one after another
    python -m tests.load --users 4 --requests 3 --sequential 0

Starts its own server on a free 127.0.0.1 port and stops it at the end; every request has a
time limit and the whole run is bounded. Each user asks for its own digits and seeds, and
every result is checked against the library's output for the same settings, so a request
that came back with someone else's digits counts as failed. Prints completed /
rejected-busy / failed / lost counts, p50 and p95 latency, and the server's memory (RSS) at
the start and the end; exits with status 1 if any request failed or was lost.
"""

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import imageio.v3 as iio
import numpy as np
from gradio_client import Client

from app import MAX_UI_SEED
from diffusion import DEFAULT_WEIGHTS, Pipeline, media

from .conftest import ROOT, free_port, wait_until_serving

REQUEST_TIMEOUT_S = 120


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def expected_image(pipe: Pipeline, digit: int, seed: int) -> np.ndarray:
    grid = media.sample_grid(media.to_uint8(pipe.generate([digit], seed=seed)), 1)
    return media.enlarge(grid)


def run_users(url: str, users: int, requests: int, first_seed: int) -> list[tuple[str, float, int, int, str]]:
    """users threads, each with its own client, sending requests one after another; returns
    (outcome, seconds, digit, seed, result image path or message) per request."""

    def user(index: int):
        client = Client(url, verbose=False)
        outcomes = []
        for r in range(requests):
            digit, seed = (index + r) % 10, (first_seed + index * requests + r) % MAX_UI_SEED
            started = time.perf_counter()
            job = client.submit(digit=str(digit), seed=seed, api_name="/generate")
            try:
                result = job.result(timeout=REQUEST_TIMEOUT_S)
                outcomes.append(("completed", time.perf_counter() - started, digit, seed, result[3]))  # the PNG
            except TimeoutError:
                job.cancel()
                outcomes.append(("lost", time.perf_counter() - started, digit, seed, "no answer in time"))
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown, none may stop the run
                outcome = "rejected-busy" if "queue is full" in str(e).lower() else "failed"
                outcomes.append((outcome, time.perf_counter() - started, digit, seed, str(e)))
        return outcomes

    with ThreadPoolExecutor(users) as pool:
        return [outcome for outcomes in pool.map(user, range(users)) for outcome in outcomes]


def report(title: str, outcomes, pipe: Pipeline, rss_start: float, rss_end: float) -> bool:
    """Print the counts, latencies and memory; check each completed image. True if nothing failed or was lost."""
    wrong = [(digit, seed) for outcome, _, digit, seed, path in outcomes
             if outcome == "completed" and not np.array_equal(iio.imread(path), expected_image(pipe, digit, seed))]
    counts = {kind: sum(o[0] == kind for o in outcomes) for kind in ("completed", "rejected-busy", "failed", "lost")}
    counts["completed"] -= len(wrong)
    counts["failed"] += len(wrong)
    latencies = sorted(seconds for outcome, seconds, *_ in outcomes if outcome == "completed")
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    print(f"{title}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items())
          + f"; latency p50 {p50:.2f} s, p95 {p95:.2f} s; server RSS {rss_start:.0f} MB -> {rss_end:.0f} MB "
          f"({rss_end - rss_start:+.0f} MB)", flush=True)
    for outcome, _, digit, seed, message in outcomes:
        if outcome in ("failed", "lost"):
            print(f"  {outcome}: digit {digit} seed {seed}: {message}")
    for digit, seed in wrong:
        print(f"  failed: digit {digit} seed {seed}: the image is not the library's for these settings")
    return counts["failed"] == 0 and counts["lost"] == 0


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--requests", type=int, default=10, help="per user")
    p.add_argument("--sequential", type=int, default=200, help="then this many one after another (0: none)")
    args = p.parse_args()
    if args.users < 1 or args.requests < 1 or args.sequential < 0:
        p.error("--users and --requests must be at least 1, --sequential at least 0")

    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    pipe = Pipeline.load(DEFAULT_WEIGHTS, device="cpu")
    try:
        wait_until_serving(url, server)
        Client(url, verbose=False).predict(digit="0", api_name="/generate")  # warm-up, not counted
        ok = True
        rss_start = rss_mb(server.pid)
        outcomes = run_users(url, args.users, args.requests, first_seed=0)
        ok &= report(f"{args.users} users x {args.requests} requests", outcomes, pipe, rss_start, rss_mb(server.pid))
        if args.sequential:
            rss_start = rss_mb(server.pid)
            outcomes = run_users(url, 1, args.sequential, first_seed=10_000)
            ok &= report(f"{args.sequential} requests one after another", outcomes, pipe, rss_start, rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
