"""Two replicas behind Debian's nginx, as CI runs them: a classroom of 60 through the proxy, with
one replica killed mid-run (tests/replicas.py). Timings are printed, not asserted."""

import re

import pytest

from .conftest import run_script

pytestmark = pytest.mark.slow  # two fresh servers and nginx: see docs/testing.md


def counts(title: str, output: str) -> dict[str, int]:
    line = re.search(rf"^{title}.*: (\d+) completed, (\d+) wrong, (\d+) turned-away, (\d+) failed, (\d+) lost$",
                     output, re.MULTILINE)
    assert line, f"no line for {title!r} in:\n{output}"
    return dict(zip(("completed", "wrong", "turned-away", "failed", "lost"), map(int, line.groups())))


def test_a_classroom_through_nginx_is_served_and_a_killed_replica_users_are_served_on_trying_again(capsys):
    result = run_script("-m", "tests.replicas", "--replicas", "2", "--users", "60", timeout=600)
    with capsys.disabled():
        print("\n" + result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    first = counts("through nginx: 60 users at once", result.stdout)
    assert first["completed"] + first["failed"] == 60 and first["wrong"] == first["lost"] == 0, first
    assert first["failed"] > 0, "the replica killed mid-run had users, whose streams ended with an error"
    again = counts(f"the {first['failed']} whose replica was killed, trying again", result.stdout)
    assert again["completed"] == first["failed"], "each was served on trying again, by the replica left"
    spread = dict(re.findall(r"(127\.0\.0\.1:\d+): (\d+)", result.stdout.split("requests per replica")[-1]))
    assert len(spread) == 2 and all(int(n) > 0 for n in spread.values()), f"both replicas served: {spread}"
