"""The load script as CI runs it: many users at once, 200 requests in a row, then a classroom of
30 and one of 100 pressing Generate together. Its timings are printed, not asserted."""

import re

import pytest

from .conftest import run_script

pytestmark = pytest.mark.slow  # a fresh server and 410 requests: see docs/testing.md


def test_every_user_gets_their_own_result_or_is_told_to_retry(capsys):
    result = run_script("-m", "tests.load", "--users", "8", "--requests", "10", "--sequential", "200",
                        "--classroom", "30", "100", timeout=1200)
    with capsys.disabled():
        print("\n" + result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = re.findall(r"^(.+): (\d+) completed, (\d+) wrong, (\d+) turned-away, (\d+) failed, (\d+) lost$",
                           result.stdout, re.MULTILINE)
    expected = {"8 users x 10 requests": 80, "200 requests one after another": 200,
                "classroom: 30 users at once": 30, "classroom: 100 users at once": 100}
    assert {title: int(completed) + int(turned_away) for title, completed, _, turned_away, *_ in summaries} == expected
    for title, completed, wrong, turned_away, failed, lost in summaries:
        assert (wrong, failed, lost) == ("0", "0", "0"), title
        if "100" not in title:
            assert turned_away == "0", f"{title}: nobody is turned away below the app's capacity"
