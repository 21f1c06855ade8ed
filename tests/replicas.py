"""Replicas behind a real nginx: a classroom through the proxy, with one replica killed mid-run.

    python -m tests.replicas                    # 2 replicas, 60 users at once, one killed mid-run
    python -m tests.replicas --users 30 --keep-all

Starts `python app.py` replicas on free ports and Debian's nginx in front of them, with the
project's proxy settings (deploy/nginx/gradio.conf) and sticky sessions by client address, as
deploy/compose.yaml runs them. The users press Generate together, each from an address of its
own (tests.load.run_users). Once the first picture has streamed, the last replica is killed
(SIGKILL): its users' streams end with an error, and each of them then tries again, as a person
presses Generate again, and is served by a replica still running. Every image is checked against
the library's for its request. Prints the counts and how the requests spread over the replicas
(from nginx's log), and exits with status 1 unless every request was served correctly or, on the
killed replica, failed with an error and was then served on trying again, and none hung.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffusion import DEFAULT_WEIGHTS, Pipeline

from .conftest import ROOT, free_port, wait_until_serving
from .load import REQUEST_TIMEOUT_S, Outcome, connect, generate, report, run_users, user_address

NGINX_CONFIG = """daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format replica '$request_method $uri $upstream_addr';
    access_log {folder}/access.log replica;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream demo {{
        hash $remote_addr consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        include {root}/deploy/nginx/gradio.conf;
    }}
}}
"""


def start_replicas(count: int, folder: Path) -> list[tuple[subprocess.Popen, int]]:
    """count `python app.py` on free ports, each logging to a file in folder; (process, port) each."""
    replicas = []
    for n in range(count):
        port = free_port()
        with open(folder / f"replica-{n}.log", "w") as log:
            replicas.append((subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"],
                                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), port))
    for n, (process, port) in enumerate(replicas):
        wait_until_serving(f"http://127.0.0.1:{port}/", process, folder / f"replica-{n}.log")
    return replicas


def start_nginx(ports: list[int], folder: Path) -> tuple[subprocess.Popen, str]:
    """Debian's nginx on a free port in front of the replicas on ports; (process, its URL)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        sys.exit("this needs nginx: on Debian or Ubuntu, apt-get install -y nginx")
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
    (folder / "nginx.conf").write_text(NGINX_CONFIG.format(folder=folder, servers=servers, port=port, root=ROOT))
    process = subprocess.Popen([nginx, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "nginx.out", "w"))
    url = f"http://127.0.0.1:{port}/"
    wait_until_serving(url, process, folder / "nginx.out", timeout=30)
    return process, url


def retry(url: str, failed: list[tuple[int, Outcome]]) -> list[Outcome]:
    """Each failed user's request again, from the user's own address, all at once."""
    def again(user: tuple[int, Outcome]) -> Outcome:
        index, outcome = user
        connection = connect(url, user_address(index))
        try:
            return generate(connection, outcome.digit, outcome.seed)
        finally:
            connection.close()

    with ThreadPoolExecutor(max(1, len(failed))) as pool:
        return list(pool.map(again, failed))


def spread(access_log: Path) -> dict[str, int]:
    """How many Generate requests each replica (by address) answered, from nginx's log; where
    nginx tried one in vain first, it logs "first, second" and the last answered."""
    lines = [line.split() for line in access_log.read_text().splitlines()]
    return collections.Counter(line[-1] for line in lines if line[:2] == ["POST", "/gradio_api/call/v2/generate"])


def classroom(url: str, users: int, kill: subprocess.Popen | None, pipe: Pipeline) -> bool:
    """users at once through url, the replica `kill` killed once the first picture has streamed;
    then the failed ones again. True if all went as the module's notes say."""
    first_update = threading.Event()

    def killer():
        if first_update.wait(REQUEST_TIMEOUT_S):
            kill.kill()

    if kill is not None:
        threading.Thread(target=killer, daemon=True).start()
    outcomes = run_users(url, users, 1, first_seed=40_000, own_addresses=True, first_update=first_update)
    ok = report(f"through nginx: {users} users at once" + (", a replica killed mid-run" if kill else ""),
                outcomes, url, pipe, None)
    failed = [(index, o) for index, o in enumerate(outcomes) if o.kind == "failed"]
    if kill is None or not failed:
        return ok
    served_again = report(f"the {len(failed)} whose replica was killed, trying again", retry(url, failed), url, pipe,
                          None)
    others = [o for o in outcomes if o.kind != "failed"]
    return served_again and all(o.kind == "completed" for o in others)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.replicas", description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--users", type=int, default=60)
    p.add_argument("--keep-all", action="store_true", help="kill no replica")
    args = p.parse_args()
    if args.replicas < 2 or args.users < 1:
        p.error("--replicas must be at least 2, --users at least 1")

    with tempfile.TemporaryDirectory(prefix="replicas-") as folder:
        folder = Path(folder)
        replicas = start_replicas(args.replicas, folder)
        processes = [process for process, _ in replicas]
        try:
            nginx, url = start_nginx([port for _, port in replicas], folder)
            processes.append(nginx)
            pipe = Pipeline.load(DEFAULT_WEIGHTS, device="cpu")
            ok = classroom(url, args.users, None if args.keep_all else replicas[-1][0], pipe)
            counts = spread(folder / "access.log")
            print("requests per replica (nginx): " + ", ".join(f"{a}: {n}" for a, n in sorted(counts.items())))
            ok &= sum(n > 0 for address, n in counts.items() if address != "-") == args.replicas
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
