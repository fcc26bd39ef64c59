"""The shape of chat/: every module short enough to read whole, and no modules that import each
other in a circle.

A circle is any set of modules each of which reaches the others by imports, however it is
closed: an import at the top of a file, one inside a function (a late import does not break a
circle, it only hides it), one under ``TYPE_CHECKING``, or a package's ``__init__`` that
re-exports from a submodule which imports the package back. The import graph is grimp's (what
import-linter reads for the layers in ``.importlinter``); a circle is a strongly connected
component of it with more than one module, named with the import lines that close it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "chat"
MAX_LINES = 400


def test_no_module_of_chat_is_over_400_lines():
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / PACKAGE).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"over {MAX_LINES} lines (split along a seam): " + ", ".join(
        f"{path} ({lines})" for path, lines in too_long.items()
    )


def test_no_modules_of_chat_import_each_other_in_a_circle():
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    found = circles(graph)
    assert not found, "modules that import each other in a circle:\n" + "\n".join(
        describe(graph, circle) for circle in found
    )


def test_a_circle_closed_by_a_late_import_or_a_package_face_is_found(tmp_path, monkeypatch):
    """The check above is only as good as what it sees: here, one circle closed inside a
    function and one through a package's ``__init__``, in a package made for the test."""
    package = tmp_path / "loops"
    (package / "face").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "alone.py": "import json\n",
        "first.py": "from loops import second\n",
        "second.py": "def later():\n    from loops import first  # late\n\n    return first\n",
        "face/__init__.py": "from loops.face.inner import NAME\n",
        "face/inner.py": "from loops import face\n\nNAME = 'inner'\n",
    }
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))

    graph = grimp.build_graph("loops", cache_dir=None)

    assert circles(graph) == [["loops.face", "loops.face.inner"], ["loops.first", "loops.second"]]
    assert "loops.second:2 from loops import first" in describe(graph, ["loops.first", "loops.second"])


def circles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without
    recursion), each sorted, sorted by their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            step = next(imported, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.find_modules_directly_imported_by(step)))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def describe(graph, circle: list[str]) -> str:
    """One loop through ``circle``, each step with the import that makes it
    (``module:line import``), then the rest of its modules."""
    first = circle[0]
    members = set(circle)
    step = next(m for m in sorted(graph.find_modules_directly_imported_by(first)) if m in members)
    loop = [first, *graph.find_shortest_chain(importer=step, imported=first)]
    lines = [f"  circle of {len(circle)}: {', '.join(circle)}"]
    for importer, imported in zip(loop, loop[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        shown = "; ".join(f"{importer}:{d['line_number']} {d['line_contents'].strip()}" for d in details)
        lines.append(f"    {importer} -> {imported}: {shown}")
    return "\n".join(lines)
