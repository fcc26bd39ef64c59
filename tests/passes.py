"""``make test``'s runner: the SQLite and the PostgreSQL pass of the suite at the same time.

Two passes one after the other left a 2-core machine half idle (much of the suite waits on
processes, sockets and Redis), so they run side by side. Each pass writes to a log of its
own; when a pass ends its whole output is printed at once under a heading (never
interleaved with the other's), then a summary line per pass. The run fails when either pass
fails, pytest's exit 5 ("no tests ran") included. Each pass keeps its own temporary
directory, database and Redis key prefixes (tests/conftest.py), so they cannot meet.

Within a pass, the tests run on pytest-xdist workers that take the next test as they finish
one (``--dist worksteal``): two for the SQLite pass, three for the PostgreSQL pass
(``DEFAULT_WORKERS``; ``TEST_WORKERS`` sets both, and 0 runs each pass in one process). The
suite is bound by CPU, and the cores go to the passes about as their workers stand: the
PostgreSQL pass has more to do (the tests that need a database server run only there), and
with two workers each it ran on alone for a minute and a half at the end, on a machine it
could not keep busy; with three workers each, the extra workers' own start-up and
contention cost more CPU than the balance saved. Every test has its own database, Redis key
prefix, ports and directory, so two in one pass cannot meet either.

    python -m tests.passes [--only sqlite|postgres] [pytest arguments...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
# pytest-xdist workers per pass (``TEST_WORKERS`` sets both).
DEFAULT_WORKERS = {"SQLite": "2", "PostgreSQL": "3"}


def _passes(environ) -> dict[str, dict[str, str]]:
    # PYTHONDONTWRITEBYTECODE (some images set it) is left out: a run starts some 300 Python
    # processes (servers, workers, commands) and every xdist worker collects every test, and
    # without cached bytecode each of them compiles the app and the tests again. The cache is
    # __pycache__, which git ignores.
    base = {k: v for k, v in environ.items() if k not in ("TEST_DATABASE_URL", "PYTHONDONTWRITEBYTECODE")}
    server = environ.get("TEST_PG_SERVER") or environ.get("TEST_DATABASE_URL") or PG_SERVER
    return {"SQLite": base, "PostgreSQL": {**base, "TEST_DATABASE_URL": server}}


def main(argv: list[str]) -> int:
    only = None
    if argv[:1] == ["--only"]:
        only, argv = argv[1].lower(), argv[2:]
    passes = {name: env for name, env in _passes(os.environ).items() if only in (None, name.lower())}
    if not passes:
        print(f"--only takes sqlite or postgres, not {only!r}", file=sys.stderr)
        return 2
    workers_given = any(arg.startswith(("-n", "--numprocesses")) for arg in argv)
    workdir = Path(tempfile.mkdtemp(prefix="chat-test-passes-"))
    print_lock = threading.Lock()
    results: dict[str, tuple[int, float]] = {}

    def run(name: str, env: dict[str, str]) -> None:
        log_path = workdir / f"{name}.log"
        workers = os.environ.get("TEST_WORKERS", DEFAULT_WORKERS[name])
        xdist = [] if workers_given or workers == "0" else ["-n", workers, "--dist", "worksteal"]
        started = time.monotonic()
        with open(log_path, "wb") as log:
            code = subprocess.call(
                [sys.executable, "-m", "pytest", f"--basetemp={workdir / (name + '-tmp')}", *xdist, *argv],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        took = time.monotonic() - started
        results[name] = (code, took)
        with print_lock:
            print(f"\n== test pass: {name} (exit {code}, {took / 60:.1f} min) ==", flush=True)
            sys.stdout.write(log_path.read_text(errors="replace"))
            sys.stdout.flush()

    print(
        f"== running {' and '.join(passes)} test passes in parallel; "
        "each one's output follows when it ends ==",
        flush=True,
    )
    threads = [threading.Thread(target=run, args=item) for item in passes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("\n== summary ==")
    for name, (code, took) in results.items():
        verdict = "passed" if code == 0 else ("NO TESTS RAN" if code == 5 else "FAILED")
        print(f"  {name:<11} {verdict} (exit {code}) in {took / 60:.1f} min")
    subprocess.call(["rm", "-rf", str(workdir)])
    return 0 if results and all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
