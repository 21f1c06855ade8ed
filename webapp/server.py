"""What serving the page needs before it starts: a port that can be listened on, memory pools,
a lighter state for each session, refusals logged in a line, uploads cut off midway deleted, and
Gradio's own checks of a request's values answered as refusals."""

import argparse
import ctypes
import errno
import inspect
import logging
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pydantic
from gradio import state_holder
from gradio.components.api_component import Api
from gradio.exceptions import InvalidPathError
from gradio.route_utils import GradioMultiPartParser, MultiPartException
from starlette.requests import ClientDisconnect

from .shared import Refusal, described, log

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


def delete_cut_off_uploads() -> None:
    """An upload whose sender leaves midway (a tab closed, a phone out of signal): Gradio kept the
    part that had arrived in its upload folder for good (delete_cache knows only finished files),
    up to max_file_size each time, and logged a traceback. Here that part is deleted, and the log
    says so in one line. For every Gradio server in this process."""
    parse = GradioMultiPartParser.parse
    if getattr(parse, "deletes_cut_off_uploads", False):
        return

    async def parse_deleting_what_was_cut_off(parser: GradioMultiPartParser):
        try:
            return await parse(parser)
        except ClientDisconnect:
            for part in parser._files_to_close_on_error:  # as Gradio's parse does for a malformed upload
                part.close()
                Path(part.name).unlink(missing_ok=True)
            if parser.upload_progress is not None:
                parser.upload_progress.set_done(parser.upload_id)
            log.info("an upload was cut off (its sender left midway): what had arrived is deleted")
            raise MultiPartException("the upload was cut off before it had all arrived") from None

    parse_deleting_what_was_cut_off.deletes_cut_off_uploads = True
    GradioMultiPartParser.parse = parse_deleting_what_was_cut_off


def log_refusals() -> None:
    """Each refusal (shared.Refusal) and each upload cut off, one line on standard output; Gradio prints
    real faults' tracebacks."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # else printed twice once a library's logging.info() gives the root logger a handler


def refuse_malformed_values(blocks: gr.Blocks) -> None:
    """Gradio checks a request's values before its handler runs (that there are enough of them; that
    a file's value is an upload, shaped as one) and answers a failure with an empty error and a
    traceback in the log. Here each is a Refusal that names the value and what is allowed."""
    checked = blocks.preprocess_data

    async def preprocess_data(block_fn, inputs: list, state, explicit_call: bool = False):
        names = value_names(block_fn)
        if not isinstance(inputs, list) or len(inputs) < len(names):
            raise Refusal(f"expected {len(names)} values ({', '.join(names)}), "
                          f"not {len(inputs) if isinstance(inputs, list) else described(inputs)}")
        for name, block, value in zip(names, block_fn.inputs, inputs):
            check_shape(name, block, value)
        try:
            return await checked(block_fn, inputs, state, explicit_call)
        except InvalidPathError:
            raise Refusal("a file among the values was not uploaded to this app: upload it first (the API "
                          "clients' handle_file does)") from None

    blocks.preprocess_data = preprocess_data


def value_names(block_fn) -> list[str]:
    """The names of an event's values: an API endpoint's parameters, or the page's widgets' labels."""
    if block_fn.inputs and all(isinstance(block, Api) for block in block_fn.inputs):
        return list(inspect.signature(block_fn.fn).parameters)
    return [str(getattr(block, "label", None) or block.get_block_name()) for block in block_fn.inputs]


def check_shape(name: str, block, value) -> None:
    """A Refusal if a file-holding widget's value is not shaped as Gradio's data for it."""
    model = getattr(block, "data_model", None)
    if model is None or value is None:
        return
    try:
        model.model_validate(value, context={"validate_meta": True})
    except pydantic.ValidationError:
        raise Refusal(f"{name}: expected {value_kind(block)}, not {described(value)}") from None


def value_kind(block) -> str:
    """What a file-holding widget's value is, for a message about a value of the wrong shape."""
    if isinstance(block, gr.Sketchpad):
        return "a drawing (the canvas's value)"
    if isinstance(block, gr.ImageEditor):
        return "a picture in the editor (its value)"
    return "a file uploaded to this app" if isinstance(block, gr.File) else "its widget's value"
