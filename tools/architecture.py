"""The layers table of docs/architecture.md, rendered from ``.importlinter``.

import-linter holds the layers in ``make lint``; the document draws them. So that the two
cannot disagree, the table is not written by hand: it is rendered from the
``[importlinter:contract:layers]`` section (and the other contracts), with one short
description per module kept in ``DESCRIPTIONS`` below, the only place a module's role is
written down for the table.

    python -m tools.architecture           rewrite the table in docs/architecture.md
    python -m tools.architecture --check   exit 1 (saying why) when the table is out of date

Every top-level module or package of ``chat`` needs a description, whether a layer lists it
or not: a module that no layer lists is drawn apart, as one that import-linter does not
hold. ``tests/test_architecture_doc.py`` runs the check in the test suite.
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "chat"
COMMAND = "python -m tools.architecture"
BEGIN = (
    f"<!-- generated from .importlinter by `{COMMAND}`: edit that file or tools/architecture.py, "
    "not this table -->"
)
END = "<!-- end of the generated layers -->"

# What each module holds, in a few words. A module that .importlinter (or chat/) gains needs
# a line here; one it loses must leave (the check names both).
DESCRIPTIONS: dict[str, str] = {
    "chat.app": "the application factory: configuration, extensions, blueprints, error handlers, hooks",
    "chat.classic": "the classic API's blueprint: routes and schemas, `{code, msg, data}`",
    "chat.kook": "the KOOK-compatible API under `/api/v3` and `/gateway`: routes, schemas, event stream, "
    "gateway, webhook routes",
    "chat.web": "the web page at `/` and the API docs viewer at `/docs`",
    "chat.tasks": "the Celery tasks and the job table: thin, taking ids",
    "chat.cli": "operator commands (`flask app-key`, `bot`, `secrets`, `counters`, `search`, `assets`, "
    "`demo`)",
    "chat.health": "the probes `/livez` and `/readyz`",
    "chat.files": "`GET /files/<token>/<name>`: uploaded files by URL alone",
    "chat.ratelimit": "rate limits (Flask-Limiter) and KOOK's rate-limit headers",
    "chat.openapi_errors": "the error answers in `/openapi.json`, in each dialect's envelope",
    "chat.auth": "credentials on requests: app keys, sessions, tokens, the web page's cookie",
    "chat.services": "the rules, once for both dialects: accounts, credentials, my account, conversations, "
    "messages, reactions, social graph, people, search, typing, demo data",
    "chat.assets": "uploads: storage (disk, S3), sniffing, image re-encoding, lifetimes, serving",
    "chat.delivery": "after a commit: push and the sweeps, reads, the unread rule, announcements, payloads, "
    "presence notices, connection slots",
    "chat.notifications": "device notifications: devices, the when-to-notify rule, Web Push / FCM / APNs",
    "chat.webhooks": "registry, address policy, signing, transport, deliveries, KOOK-format callbacks; "
    "the claim-retry-sweep ledger device notifications share",
    "chat.outbox": "side effects recorded in a transaction, performed after its commit",
    "chat.metrics": "every Prometheus metric and `GET /metrics`",
    "chat.backends": "every backend built once from the configuration, each behind a `typing.Protocol`; "
    "the one place that asks whether Redis is configured",
    "chat.runner": "the task queues behind one `enqueue`: Celery on Redis, or in this process",
    "chat.realtime": "per-user event bus (Redis Streams or in-process) and the process's pub/sub "
    "subscriber, presence, signals, SSE, gateway sessions",
    "chat.blueprint": "the Blueprint every API route is declared on, with `operation`",
    "chat.schemas": "what both dialects' schemas share: base schema, envelopes, loose fields",
    "chat.request_parser": "how routes read their arguments: webargs' parser, strict JSON, `body_or_query`",
    "chat.kook_wire": "KOOK's wire format, pure: events from stream events, frames, socket and "
    "callback bytes",
    "chat.examples": "the ids the OpenAPI examples name and `flask demo` seeds",
    "chat.celery_config": "Celery's settings, derived from the app's configuration",
    "chat.names": "usernames and nicknames: PRECIS profiles, confusable skeletons",
    "chat.search": "message search: the searchable text and the index on each database",
    "chat.message_types": "the one table of message types and their content rules",
    "chat.models": "SQLAlchemy 2 typed models, one module per subject: the one data model",
    "chat.platform": "wrappers and overrides of libraries, knowing no chat: gevent, Celery's broker, "
    "Flask-Limiter's storage, JSON in and out, HTTP guards, logging, password hashing",
    "chat.endpoints": "marks a view sets on itself (a send, a password check, its body limit, uploads, "
    "a credential in its answer)",
    "chat.errors": "the one error type, raised one way, and its handlers",
    "chat.db": "the one transaction boundary: `atomic()`, `on_commit()` and the named modes "
    "(`end_read`, `autocommit`, ...)",
    "chat.extensions": "unbound extension instances (db, the OpenAPI `api`)",
    "chat.dialects": "which dialect a path speaks (KOOK: `/api/v3`, `/gateway`; classic: the rest), "
    "and each one's envelopes",
}

_LAYERS = "importlinter:contract:layers"


@dataclass(frozen=True)
class Layer:
    modules: tuple[str, ...]
    independent: bool  # siblings joined by "|" may not import each other; by ":" they may


@dataclass(frozen=True)
class Forbidden:
    name: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def read_config(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def layers(parser: configparser.ConfigParser) -> list[Layer]:
    """The layers, top to bottom, as import-linter reads them."""
    found = []
    for line in _lines(parser[_LAYERS]["layers"]):
        line = line.strip("()")  # import-linter's optional-layer parentheses
        if "|" in line and ":" in line:
            raise ValueError(f"{CONFIG.name}: a layer mixes '|' and ':': {line}")
        parts = re.split(r"[|:]", line)
        found.append(Layer(tuple(part.strip() for part in parts), independent="|" in line))
    return found


def forbidden_contracts(parser: configparser.ConfigParser) -> list[Forbidden]:
    return [
        Forbidden(
            section["name"],
            tuple(_lines(section["source_modules"])),
            tuple(_lines(section["forbidden_modules"])),
        )
        for name, section in parser.items()
        if name.startswith("importlinter:contract:") and section.get("type") == "forbidden"
    ]


def top_level_modules(package: Path = PACKAGE) -> list[str]:
    """Every module and package directly under ``chat`` (the package itself left out)."""
    names = []
    for path in sorted(package.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            names.append(f"chat.{path.name}")
        elif path.suffix == ".py" and path.stem != "__init__":
            names.append(f"chat.{path.stem}")
    return names


def _covered(module: str, listed: set[str]) -> bool:
    """Whether a layer lists ``module``, a package holding it, or a module inside it."""
    return any(
        module == name or module.startswith(name + ".") or name.startswith(module + ".") for name in listed
    )


def unlayered(found: list[Layer], modules: list[str]) -> list[str]:
    listed = {module for layer in found for module in layer.modules}
    return [module for module in modules if not _covered(module, listed)]


def problems(found: list[Layer], outside: list[str]) -> list[str]:
    """What keeps the table from being rendered: modules without a description, and
    descriptions of modules that neither a layer nor chat/ has any more."""
    named = [module for layer in found for module in layer.modules] + outside
    missing = [module for module in named if module not in DESCRIPTIONS]
    stale = sorted(set(DESCRIPTIONS) - set(named))
    return [
        *(
            f"{module} has no description: add a line for it to DESCRIPTIONS in tools/architecture.py, "
            f"then run `{COMMAND}`"
            for module in missing
        ),
        *(
            f"{module} is described in tools/architecture.py but is neither in a layer of .importlinter "
            f"nor in chat/: remove its line from DESCRIPTIONS, then run `{COMMAND}`"
            for module in stale
        ),
    ]


def render(found: list[Layer], outside: list[str], contracts: list[Forbidden]) -> str:
    rows = ["| layer | module | what it holds |", "|---|---|---|"]
    for number, layer in enumerate(found, 1):
        for index, module in enumerate(layer.modules):
            label = ""
            if index == 0:
                label = str(number)
                if len(layer.modules) > 1:
                    label += " (independent)" if layer.independent else " (may import each other)"
            rows.append(f"| {label} | `{module}` | {DESCRIPTIONS[module]} |")
    out = [
        f"{len(found)} layers, top to bottom: a module imports only from layers below its own. "
        'Modules of an "independent" layer do not import each other either.',
        "",
        *rows,
    ]
    if outside:
        out += ["", "In no layer, so import-linter holds no rule for them:", ""]
        out += [f"- `{module}`: {DESCRIPTIONS[module]}" for module in outside]
    if contracts:
        out += ["", "The other contracts:", ""]
        for contract in contracts:
            sources = ", ".join(f"`{name}`" for name in contract.sources)
            targets = ", ".join(f"`{name}`" for name in contract.forbidden)
            out.append(f"- {contract.name}: {sources} may not import {targets}.")
    return "\n".join(out)


def rendered(config_text: str | None = None, package: Path = PACKAGE) -> tuple[str, list[str]]:
    """The table for the current ``.importlinter`` and ``chat/``, and what is wrong (if
    anything, the table is empty)."""
    parser = read_config(CONFIG.read_text() if config_text is None else config_text)
    found = layers(parser)
    outside = unlayered(found, top_level_modules(package))
    wrong = problems(found, outside)
    if wrong:
        return "", wrong
    return render(found, outside, forbidden_contracts(parser)), []


def current(doc: str) -> str:
    """The table as docs/architecture.md holds it now."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(
            f"{DOC.relative_to(ROOT)} has lost the markers around its layers table ({BEGIN!r} ... {END!r})"
        )
    return doc[start + len(BEGIN) : end].strip("\n")


def replaced(doc: str, table: str) -> str:
    current(doc)  # the markers must be there
    start, end = doc.find(BEGIN) + len(BEGIN), doc.find(END)
    return f"{doc[:start]}\n{table}\n{doc[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the table is out of date")
    args = parser.parse_args(argv)
    table, wrong = rendered()
    if wrong:
        print("\n".join(wrong), file=sys.stderr)
        return 1
    doc = DOC.read_text()
    if current(doc) == table:
        return 0
    if args.check:
        print(
            f"docs/architecture.md's layers table differs from .importlinter: run `{COMMAND}`",
            file=sys.stderr,
        )
        return 1
    DOC.write_text(replaced(doc, table))
    print(f"rewrote the layers table of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
