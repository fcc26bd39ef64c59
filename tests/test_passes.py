"""``make test``'s runner (tests/passes.py): a pass that runs no test fails the run, and each
pass's output is printed whole under its own heading, then a summary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack import ROOT

# The run it starts is a SQLite pass either way.
pytestmark = pytest.mark.one_pass


def test_a_pass_that_runs_no_test_fails_the_run_and_is_reported_by_name():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.passes",
            "--only",
            "sqlite",
            "tests/models/test_carrying.py",
            "-q",
            "-k",
            "no_test_has_this_name",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "== test pass: SQLite (exit 5" in result.stdout
    assert "SQLite      NO TESTS RAN (exit 5)" in result.stdout
    assert "PostgreSQL" not in result.stdout.split("== summary ==")[1]
