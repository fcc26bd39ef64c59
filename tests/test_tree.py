"""The tests mirror the code: ``tests/<package>/`` holds the tests of ``chat/<package>/``, and a
``tests/test_<module>.py`` at the top those of ``chat/<module>.py``, so the tests of any code are
found by its path. Only the tiers that cross packages are apart: ``tests/integration`` (real
processes: gunicorn, Celery, Redis, browsers, the khl.py SDK) and ``tests/security``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CHAT = ROOT / "chat"

# Directories of tests that name no package, and why.
APART = {
    "integration": "the production stack on real processes, across every package",
    "security": "attacks and limits that cross packages (envelopes, ids, bodies, revocation)",
}

# Top-level test files that test no single chat module, and what they test instead.
WHOLE_APP = {
    "test_architecture_doc.py": "docs/architecture.md's layers table against tools/architecture.py",
    "test_config.py": "config.py at the repository's root: every setting, profile and check",
    "test_fuzz.py": "every operation in /openapi.json, fuzzed from the document",
    "test_gunicorn_conf.py": "gunicorn.conf.py at the repository's root",
    "test_migrations.py": "migrations/: the schema they make is the one the models declare",
    "test_passes.py": "make test's runner, tests/passes.py",
    "test_structure.py": "the shape of all of chat/: no module over 400 lines, no import circle",
    "test_tree.py": "this layout",
}


def _test_directories() -> list[Path]:
    return sorted(p for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def test_every_test_directory_names_a_package_of_chat():
    stray = [
        d.name
        for d in _test_directories()
        if d.name not in APART and not (CHAT / d.name / "__init__.py").is_file()
    ]
    assert not stray, (
        f"tests/{stray[0]}/ names no package chat/{stray[0]}/ (tests mirror chat/; see tests/test_tree.py)"
    )


def test_every_top_level_test_file_names_a_chat_module_or_says_what_it_checks():
    stray = [
        f.name
        for f in sorted(TESTS.glob("test_*.py"))
        if f.name not in WHOLE_APP and not (CHAT / f.name.removeprefix("test_")).is_file()
    ]
    assert not stray, (
        f"tests/{stray[0]} names no module chat/{stray[0].removeprefix('test_')}: move it beside the code it "
        "tests, or list it in WHOLE_APP with what it checks"
    )


def test_the_exceptions_are_still_there():
    """An exception whose file or directory is gone is taken out of the list, not kept."""
    names = {d.name for d in _test_directories()}
    assert set(APART) <= names
    assert all((TESTS / name).is_file() for name in WHOLE_APP)


def test_every_test_directory_is_a_package():
    """Module names repeat across directories (classic/test_messages.py and
    services/test_messages.py); pytest imports each as ``tests.<directory>.<module>``, which
    needs the ``__init__.py``."""
    assert [d.name for d in _test_directories() if not (d / "__init__.py").is_file()] == []
