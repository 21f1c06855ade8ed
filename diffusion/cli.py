"""What the command-line scripts share: one-line errors and the digit list syntax."""

import argparse
import sys
from typing import Callable

from .io import WeightsError


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


def parse_samplers(text: str) -> list[tuple[str, int]]:
    settings = []
    for item in text.split(","):
        name, _, steps = item.partition(":")
        if not steps.isdigit():
            raise ValueError(f"--samplers takes sampler:steps pairs like dpmpp:10,ddim:50, not {item!r}")
        settings.append((name.strip(), int(steps)))
    return settings
