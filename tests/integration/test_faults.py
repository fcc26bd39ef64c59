"""The short fault test: the fault suite (``make faults``, ``bench/faults.py``) with one fault
of each kind (the push worker SIGKILLed, Redis SIGKILLed and restarted empty, PostgreSQL
crash-stopped and restarted) during a few hundred sends, on the Procfile's own processes and a
private PostgreSQL cluster and Redis. Nothing accepted is lost or doubled, everything is
pushed, counters equal the rebuild, every refusal is a 503 during a fault, and no process
exits unless the scenario killed it.

To stay short it runs with shorter recovery settings than production's (``faults.SHORT``:
sweeps every 2 s, a 10 s visibility timeout, ...) and raised per-user limits; it checks only
correctness (``faults.check``), never how long anything took, so those settings change how
long it runs and nothing it asserts. ``make faults`` runs the full suite at the defaults."""

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
    assert [f.kind for f in result["faults"]] == ["worker", "redis", "postgres"]
    assert result["refused with 503 during a fault"] + result["accepted (2xx)"] == result["messages sent"]
