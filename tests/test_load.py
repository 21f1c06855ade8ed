"""The load script as CI runs it: many users at once, then 200 requests in a row."""

import pytest

from .conftest import run_script

pytestmark = pytest.mark.slow  # a fresh server and 280 requests: see the README's "Test"


def test_eight_users_and_two_hundred_requests_all_get_their_own_result(capsys):
    result = run_script("-m", "tests.load", "--users", "8", "--requests", "10", "--sequential", "200", timeout=900)
    with capsys.disabled():
        print("\n" + result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines()[:2]:
        assert "0 failed, 0 lost" in line
