"""docs/architecture.md's layers table is the one ``tools.architecture`` renders from
``.importlinter``, so the drawing and the contract import-linter holds cannot drift apart."""

from __future__ import annotations

from tools import architecture


def test_every_module_is_described():
    _, wrong = architecture.rendered()
    assert not wrong, "\n".join(wrong)


def test_the_document_holds_the_rendered_table():
    table, wrong = architecture.rendered()
    assert not wrong, "\n".join(wrong)
    shown = architecture.current(architecture.DOC.read_text())
    assert shown == table, (
        f"docs/architecture.md's layers table differs from what .importlinter holds: run "
        f"`{architecture.COMMAND}` and commit the result"
    )


CONFIG = """
[importlinter]
root_packages = chat

[importlinter:contract:layers]
name = layers
type = layers
layers =
    chat.app
    # a comment between layers
    chat.classic | chat.kook
    chat.models : chat.errors
"""


def test_a_module_without_a_description_says_what_to_add(tmp_path, monkeypatch):
    package = tmp_path / "chat"
    package.mkdir()
    for name in ("app", "classic", "kook", "models", "errors", "brand_new"):
        (package / f"{name}.py").write_text("")
    config = CONFIG.replace("chat.classic | chat.kook", "chat.classic | chat.kook | chat.unheard_of")
    monkeypatch.setattr(
        architecture,
        "DESCRIPTIONS",
        {
            name: "x"
            for name in ("chat.app", "chat.classic", "chat.kook", "chat.models", "chat.errors", "chat.gone")
        },
    )
    table, wrong = architecture.rendered(config, package)
    assert table == ""
    assert any(
        line.startswith(
            "chat.unheard_of has no description: add a line for it to DESCRIPTIONS in tools/architecture.py"
        )
        for line in wrong
    )
    assert any(line.startswith("chat.brand_new has no description") for line in wrong)
    assert any(line.startswith("chat.gone is described") for line in wrong)
    assert all("python -m tools.architecture" in line for line in wrong)


def test_layers_siblings_and_modules_outside_them(tmp_path, monkeypatch):
    package = tmp_path / "chat"
    (package / "kook").mkdir(parents=True)
    (package / "kook" / "__init__.py").write_text("")
    for name in ("__init__", "app", "classic", "models", "errors", "loose"):
        (package / f"{name}.py").write_text("")
    monkeypatch.setattr(
        architecture,
        "DESCRIPTIONS",
        {
            name: name.removeprefix("chat.") + " things"
            for name in ("chat.app", "chat.classic", "chat.kook", "chat.models", "chat.errors", "chat.loose")
        },
    )
    table, wrong = architecture.rendered(CONFIG, package)
    assert wrong == []
    assert "3 layers, top to bottom" in table
    assert "| 1 | `chat.app` | app things |" in table
    assert "| 2 (independent) | `chat.classic` | classic things |" in table
    assert "|  | `chat.kook` | kook things |" in table
    assert "| 3 (may import each other) | `chat.models` | models things |" in table
    assert "- `chat.loose`: loose things" in table


def test_a_package_listed_by_its_modules_is_in_the_layers(tmp_path):
    package = tmp_path / "chat"
    (package / "platform").mkdir(parents=True)
    (package / "platform" / "__init__.py").write_text("")
    found = architecture.layers(architecture.read_config(CONFIG.replace("chat.app", "chat.platform.green")))
    assert architecture.unlayered(found, architecture.top_level_modules(package)) == []


def test_the_table_is_replaced_between_its_markers():
    doc = f"# A\n\nbefore\n\n{architecture.BEGIN}\nold table\n{architecture.END}\n\nafter\n"
    new = architecture.replaced(doc, "new table")
    assert new == f"# A\n\nbefore\n\n{architecture.BEGIN}\nnew table\n{architecture.END}\n\nafter\n"
    assert architecture.current(new) == "new table"
