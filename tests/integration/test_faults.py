"""The short fault test: the fault suite (``make faults``, ``bench/faults.py``) with one fault
of each kind (a worker SIGKILLed, Redis SIGKILLed and restarted empty, PostgreSQL restarted)
during a few hundred sends, on a private PostgreSQL cluster and Redis. Nothing accepted is
lost or doubled, everything is pushed, counters equal the rebuild, every process survives."""

from __future__ import annotations

import shutil

import pytest

from bench import faults

pytestmark = pytest.mark.integration


def test_one_fault_of_each_kind_loses_nothing(is_postgres, tmp_path):
    if not is_postgres:
        pytest.skip("runs once, in the PostgreSQL pass (it makes a cluster of its own either way)")
    if not (faults.PG_BIN / "initdb").exists() or shutil.which("redis-server") is None:
        pytest.skip("needs PostgreSQL's initdb and redis-server")
    result = faults.run(messages=300, users=6, senders=4, short=True, workdir=tmp_path)
    print(faults.table(result))
    assert faults.check(result) == []
    assert [r.fault for r in result["recoveries"]] == ["worker", "redis", "postgres"]
    assert result["refused with 503"] + result["accepted (2xx)"] == result["messages sent"]
