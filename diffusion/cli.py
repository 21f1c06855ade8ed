"""What the command-line scripts share: one-line errors that name the flag, and the digit list syntax."""

import argparse
import itertools
import sys
from contextlib import contextmanager
from typing import Callable

from .io import WeightsError
from .pipeline import Pipeline, pick_device
from .settings import SettingError

DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: the best available: CUDA, then MPS, then the CPU)"
# The library's parameter names as the sweeping tools (evaluate, bench) spell them.
SWEEP_FLAGS = {"sampler": "--samplers (sampler)", "steps": "--samplers (steps)", "guidance_scale": "--guidance",
               "seed": "--seed", "guidance_interval": "--guidance-interval"}
GUIDANCE_INTERVAL_HELP = ("the timesteps where guidance above 1 applies, LOW-HIGH (e.g. 443-777), or 'all' "
                          "(default: the weights' recommendation)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits with status 2."""

    def error(self, message: str):
        fail(self.prog, message)


def fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[], None], prog: str) -> None:
    """Run a script's main; an expected failure (bad value, bad weights, no data) is one line, status 2."""
    try:
        main()
    except (ValueError, WeightsError, OSError) as e:
        fail(prog, str(e))


@contextmanager
def settings_as_flags(parser: argparse.ArgumentParser, flags: dict[str, str]):
    """Report the library's SettingError under the script's own flag, with the limit that applies:
    `argument --guidance: must be a number from 0 to 100, not -1.0`."""
    try:
        yield
    except SettingError as e:
        parser.error(f"argument {flags.get(e.name, e.name)}: must be {e.allowed}, not {e.value!r}")


def check_sweep(parser: argparse.ArgumentParser, pipeline: Pipeline, samplers: list[tuple[str, int]],
                guidance_scales: list[float], seed: int = 0, guidance_intervals: list = (None,)) -> None:
    """Check every setting of a sweep before its long work starts, reporting a bad one by its flag."""
    with settings_as_flags(parser, SWEEP_FLAGS):
        for (sampler, steps), guidance_scale, interval in itertools.product(samplers, guidance_scales, guidance_intervals):
            pipeline.settings([0], seed, guidance_scale, sampler, steps, guidance_interval=interval)


def device(text: str) -> str:
    """--device: a device this machine has, checked before any work starts."""
    try:
        pick_device(text)
    except SettingError as e:
        raise argparse.ArgumentTypeError(f"must be {e.allowed}, not {text!r}") from None
    return text


def file_ending(suffix: str) -> Callable[[str], str]:
    """An argument type for an output file whose name must end in suffix, so that a file's
    name says what it holds (no GIF data under a .png name)."""

    def check(text: str) -> str:
        if not text.lower().endswith(suffix):
            raise argparse.ArgumentTypeError(f"must be a file name ending in {suffix}, not {text!r}")
        return text

    return check


def parse_digits(text: str) -> list[int]:
    """'7' -> [7]; '3,7' -> [3, 7]; '0-9' -> [0, ..., 9]; '0-2,7' -> [0, 1, 2, 7]."""
    digits = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not (low.isdigit() and (high.isdigit() or not high)):
            raise argparse.ArgumentTypeError(f"invalid digits {text!r}: use e.g. 7, 3,7 or 0-9")
        low, high = int(low), int(high or low)
        if not 0 <= low <= high <= 9:
            raise argparse.ArgumentTypeError(f"invalid digits {text!r}: digits go from 0 to 9, ranges upwards")
        digits.extend(range(low, high + 1))
    return digits


def parse_digit_and_seed(text: str) -> tuple[int, int]:
    """'3:1' -> (3, 1): a digit and a seed, the two ends of a morph."""
    digit, _, seed = text.partition(":")
    if not (digit.strip().isdigit() and seed.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"takes DIGIT:SEED, e.g. 3:1, not {text!r}")
    return int(digit), int(seed)


def parse_guidance_interval(text: str) -> tuple[int, int] | str:
    """'443-777' -> (443, 777); 'all' stays 'all' (every timestep: Pipeline.all_timesteps)."""
    if text.strip() == "all":
        return "all"
    low, _, high = text.partition("-")
    if not (low.strip().isdigit() and high.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"takes LOW-HIGH timesteps, e.g. 443-777, or all, not {text!r}")
    return int(low), int(high)


def guidance_interval(pipeline: Pipeline, parsed: tuple[int, int] | str | None) -> tuple[int, int] | None:
    """What parse_guidance_interval gave, as the pipeline takes it (None: the recommended one)."""
    return pipeline.all_timesteps if parsed == "all" else parsed


def interval_text(guidance_interval: tuple[int, int] | None) -> str:
    """How tables print a guidance interval: 'all' for every timestep (None), else 'LOW-HIGH'."""
    return "all" if guidance_interval is None else "{}-{}".format(*guidance_interval)


def parse_samplers(text: str) -> list[tuple[str, int]]:
    settings = []
    for item in text.split(","):
        name, _, steps = item.partition(":")
        if not steps.isdigit():
            raise ValueError(f"--samplers takes sampler:steps pairs like dpmpp:10,ddim:50, not {item!r}")
        settings.append((name.strip(), int(steps)))
    return settings
