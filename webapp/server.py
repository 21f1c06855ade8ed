"""What serving the page needs before it starts: a port that can be listened on, memory pools,
and a lighter state for each session."""

import argparse
import ctypes
import errno
import socket
import sys
from types import SimpleNamespace

from gradio import state_holder

M_ARENA_MAX = -8  # glibc's mallopt setting for the number of memory pools (malloc.h)


def port(text: str) -> int:
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, not {text!r}")
    return int(text)


def check_can_listen(parser: argparse.ArgumentParser, host: str, port: int) -> None:
    """Fail in one line naming the flag, before the weights load, if the server could not listen
    on host:port (Gradio's own message would name launch()'s parameters, not ours)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        parser.error(f"argument --host: cannot resolve {host!r} ({e.strerror}); try 127.0.0.1 or 0.0.0.0")
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                parser.error(f"argument --port: port {port} is in use (by another app.py?); choose another with --port")
            if e.errno == errno.EACCES:
                parser.error(f"argument --port: port {port} needs administrator rights; choose one above 1023")
            parser.error(f"argument --host: cannot listen on {host} ({e.strerror}); try 127.0.0.1 or 0.0.0.0")


def share_memory_pools(pools: int = 2) -> None:
    """Linux's C library gives each thread that allocates a memory pool (arena) of its own, up to 8
    a core, and keeps what it frees for that thread: 100 users at once grew a fresh server by 133 MB,
    and by 76 MB with two pools. Called before any thread starts."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None
    if mallopt:
        mallopt(M_ARENA_MAX, pools)


class SessionStateWithoutDeepLinks(state_holder.SessionState):
    """Gradio's state for one session (a browser page, or one API call), without the copy of
    each component's settings and latest value that Gradio keeps for deep links (gr.DeepLinkButton,
    not on this page). What events read is kept: each component as last updated, gr.State values.
    Gradio copied the settings of all 195 components as a session started, 10 ms of the one thread
    Python runs at a time and 0.3 MB, and 100 API calls at once waited for it in turn; and the
    copy held each session's latest picture, a run's whole animation (docs/serving.md)."""

    def __init__(self, blocks):
        # Gradio's own __init__, given no components whose settings to copy.
        super().__init__(SimpleNamespace(default_config=blocks.default_config, blocks={}))
        self.config_values = NothingKept()

    def _update_config(self, key: int) -> None:
        pass  # the deep links' copy, not kept

    def _update_value_in_config(self, key: int, value) -> None:
        pass  # the deep links' copy, not kept


class NothingKept(dict):
    """A dict that keeps nothing written to it."""

    def __setitem__(self, key, value) -> None:
        pass


def sessions_without_deep_links() -> None:
    """Every Gradio server in this process keeps its sessions' states as SessionStateWithoutDeepLinks."""
    state_holder.SessionState = SessionStateWithoutDeepLinks
