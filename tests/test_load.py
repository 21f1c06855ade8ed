"""The load script as CI runs it: many users at once, 50 requests in a row, then a hall of 100
pressing Generate together. Its timings are printed, not asserted."""

import re

import pytest

from .conftest import run_script

pytestmark = pytest.mark.slow  # a fresh server and 190 requests: see docs/testing.md


def test_everyone_up_to_a_hall_of_100_gets_their_own_result(capsys):
    result = run_script("-m", "tests.load", "--users", "8", "--requests", "5", "--sequential", "50",
                        "--classroom", "100", timeout=1200)
    with capsys.disabled():
        print("\n" + result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = re.findall(r"^(.+): (\d+) completed, (\d+) wrong, (\d+) turned-away, (\d+) failed, (\d+) lost$",
                           result.stdout, re.MULTILINE)
    expected = {"8 users x 5 requests": 40, "50 requests one after another": 50, "classroom: 100 users at once": 100}
    assert {title: int(completed) for title, completed, *_ in summaries} == expected, "everyone served"
    for title, completed, wrong, turned_away, failed, lost in summaries:
        assert (wrong, turned_away, failed, lost) == ("0", "0", "0", "0"), f"{title}: nobody is turned away up to 100"
