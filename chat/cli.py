"""Operator commands: ``flask app-key``, ``flask bot``, ``flask secrets``, ``flask counters``,
``flask search``, ``flask assets``, ``flask demo``.

Commands that create a secret print it once, as the last line of their output; commands that
change a credential end with a one-line result. Commands that walk all the data show a
progress bar and end with a summary.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from chat import webhooks
from chat.assets import lifecycle as assets
from chat.db import checkpoint
from chat.delivery import counters
from chat.errors import Kind, ServiceError
from chat.extensions import db
from chat.search import index as search_index
from chat.services import accounts, credentials
from chat.services import demo as demo_data

app_key_cli = AppGroup("app-key", help="Create, list and revoke app keys (X-APP-Key).")
bot_cli = AppGroup("bot", help="Create and list bot users; reset and revoke their tokens.")
bot_token_cli = AppGroup("token", help="Reset or revoke a bot's token.")
bot_cli.add_command(bot_token_cli)
secrets_cli = AppGroup("secrets", help="Re-encrypt stored secrets with the current SECRET_KEY.")
counters_cli = AppGroup("counters", help="Check and repair read/unread counters.")
search_cli = AppGroup("search", help="Rebuild the message search index.")
assets_cli = AppGroup("assets", help="Uploaded files.")


def _fail(err: ServiceError):
    raise click.ClickException(err.message)


@app_key_cli.command("create")
@click.argument("name")
def create_app_key(name: str) -> None:
    """Create an app key; prints it once, as the last line."""
    try:
        raw = accounts.create_app_key(name)
    except ServiceError as err:
        _fail(err)
    click.echo(f"app key {name!r} created; it is shown only now:")
    click.echo(raw)


@app_key_cli.command("revoke")
@click.argument("name")
def revoke_app_key(name: str) -> None:
    """Revoke an app key: clients using it are refused from now on."""
    try:
        accounts.revoke_app_key(name)
    except ServiceError as err:
        _fail(err)
    click.echo(f"app key {name!r} revoked")


def _when(ms: int | None) -> str:
    """A stored time (ms) as people read it, in UTC."""
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


EXPIRES_OPTION = click.option(
    "--expires-days",
    type=click.FloatRange(min=0, min_open=True, max=36500),
    default=None,
    help="The token stops working after this many days (default: never).",
)


@app_key_cli.command("list")
def list_app_keys() -> None:
    """List app keys: name, created, last used, revoked (never the keys: only digests are kept)."""
    keys = accounts.list_app_keys()
    if not keys:
        click.echo("no app keys")
        return
    click.echo(f"{'NAME':<24} {'CREATED':<23} {'LAST USED':<23} STATE")
    for key in keys:
        state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "live"
        click.echo(f"{key.name:<24} {_when(key.created_at):<23} {_when(key.last_used_at):<23} {state}")


@bot_cli.command("create")
@click.argument("username")
@click.option("--nickname", default="", help="Display name (defaults to the username).")
@EXPIRES_OPTION
def create_bot(username: str, nickname: str, expires_days: float | None) -> None:
    """Create a bot user; prints its token once, as the last line."""
    try:
        user, raw = accounts.create_bot(username, nickname, expires_days)
    except ServiceError as err:
        _fail(err)
    click.echo(f"bot {user.username!r} created with id {user.id}; its token is shown only now:")
    click.echo(raw)


@bot_cli.command("list")
def list_bots() -> None:
    """List bots: name, id, created, and their token's last use and expiry."""
    bots = accounts.list_bots()
    if not bots:
        click.echo("no bots")
        return
    click.echo(f"{'NAME':<24} {'ID':<11} {'CREATED':<23} {'TOKEN LAST USED':<23} TOKEN EXPIRES")
    for bot in bots:
        token = bot["token"]
        used = _when(token.last_used_at) if token else "-"
        expires = (
            ("never" if token.expires_at is None else _when(token.expires_at)) if token else "no live token"
        )
        click.echo(
            f"{bot['username']:<24} {bot['id']:<11} {_when(bot['created_at']):<23} {used:<23} {expires}"
        )


@bot_token_cli.command("reset")
@click.argument("username")
@EXPIRES_OPTION
def reset_bot_token(username: str, expires_days: float | None) -> None:
    """Give a bot a new token (printed once, as the last line); the old one stops working and
    whatever is connected with it is cut off. The bot keeps its id, chats and messages."""
    try:
        raw = accounts.reset_bot_token(username, expires_days)
    except ServiceError as err:
        _fail(err)
    click.echo(f"bot {username!r} has a new token; the old one no longer works. It is shown only now:")
    click.echo(raw)


@bot_token_cli.command("revoke")
@click.argument("username")
def revoke_bot_token(username: str) -> None:
    """Revoke a bot's token: it cannot act until `flask bot token reset` gives it a new one."""
    try:
        count = accounts.revoke_bot_token(username)
    except ServiceError as err:
        _fail(err)
    click.echo(f"bot {username!r}: {count} token{'s' if count != 1 else ''} revoked")


@secrets_cli.command("rotate")
def rotate_secrets() -> None:
    """Re-encrypt every stored secret (webhook secrets) with the current SECRET_KEY; after it,
    the old key can leave SECRET_KEY_FALLBACKS."""
    done, unreadable = webhooks.reencrypt_secrets()
    click.echo(
        f"{done} webhook secret{'s' if done != 1 else ''} re-encrypted with the current SECRET_KEY"
        + (
            f"; {unreadable} could not be read with any configured key (create those webhooks again)"
            if unreadable
            else ""
        )
    )
    if unreadable:
        raise SystemExit(1)


def _progress(label: str, seen: list[int]):
    """A ``progress`` wrapper for services that walk many rows: a bar on the terminal
    (click prints just the label when the output is not one), counting into ``seen``."""

    def wrap(items):
        with click.progressbar(items, label=label, show_pos=True, show_eta=True) as bar:
            for item in bar:
                seen[0] += 1
                yield item

    return wrap


@counters_cli.command("rebuild")
def rebuild_counters() -> None:
    """Recompute every unread count and latest message time from the messages."""
    seen, started = [0], time.monotonic()
    changed = counters.rebuild_all(progress=_progress("checking member rows", seen))
    # The changed count is the number scripts read ("N member rows were wrong").
    click.echo(
        f"counters rebuilt in {time.monotonic() - started:.1f} s: {seen[0]} checked, "
        f"{changed} member rows were wrong and are fixed"
    )


@search_cli.command("rebuild")
def rebuild_search() -> None:
    """Write every message's search document again and make sure the index is there."""
    started = time.monotonic()
    # Each batch commits on its own: sends go on meanwhile, and a stopped rebuild keeps
    # what it did (running it again finishes the job).
    with db.engine.connect() as connection:
        search_index.create(connection)  # what is missing (a restored dump, a dropped index)
        checkpoint(connection)
        changed = search_index.fill(
            connection, commit_batches=True, progress=_progress("indexing messages", [0])
        )
        search_index.create(connection)  # SQLite: the FTS table rebuilt from the documents
        checkpoint(connection)
        warning = search_index.locale_warning(connection)
    if warning:
        click.echo(warning)
    click.echo(
        f"search index rebuilt in {time.monotonic() - started:.1f} s: "
        f"{changed} messages had a stale search document and are fixed"
    )


def _write_secret(path: Path, value: str) -> None:
    """Write a secret readable by this account only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")


def ensure_web_app_key() -> str:
    """Make sure the web page has an app key (the embedded default); says what was done.

    ``WEB_APP_KEY`` set: nothing to do. Otherwise the key in ``WEB_APP_KEY_FILE`` is kept
    while it is valid, and replaced by a new one (named ``web``, or ``web-<random>`` when
    that name is taken) when it is missing or revoked.
    """
    config = current_app.config
    if config.get("WEB_APP_KEY"):
        return "the web page uses the app key in WEB_APP_KEY"
    if not config.get("WEB_APP_KEY_FILE"):
        return "the web page has no app key: set WEB_APP_KEY (see docs/operations.md)"
    path = Path(config["WEB_APP_KEY_FILE"])
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing and credentials.app_key_is_valid(existing):
        return f"the web page uses the app key in {path}"
    for name in ("web", *(f"web-{secrets.token_hex(3)}" for _ in range(5))):
        try:
            raw = accounts.create_app_key(name)
            break
        except ServiceError as err:
            if err.kind != Kind.CONFLICT:
                _fail(err)
    else:
        raise click.ClickException("could not find a free name for the web page's app key")
    _write_secret(path, raw)
    return f"the web page got a new app key {name!r}, kept in {path}"


def _demo_port(given: int | None) -> str:
    """The port the server of ``make run`` / ``flask run`` listens on: ``--port``, else
    ``PORT`` (what `make run` passes on), else ``FLASK_RUN_PORT`` (flask run's own), else
    flask run's default, 5000."""
    if given:
        return str(given)
    for name in ("PORT", "FLASK_RUN_PORT"):
        value = os.environ.get(name, "").strip()
        if value.isascii() and value.isdigit():
            return value
    return "5000"


@click.command("demo")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="The port the server listens on, for the addresses shown (default: $PORT, $FLASK_RUN_PORT or 5000).",
)
def demo(port: int | None) -> None:
    """Make demo data on an empty database, give the web page its app key, say what to open."""
    base = f"http://127.0.0.1:{_demo_port(port)}"
    if accounts.count_users():
        click.echo("the database already has users; demo users are only made on an empty one")
        key = None
    else:
        key = accounts.create_app_key("demo")
        people = demo_data.seed()
        alice, bob = people["alice"], people["bob"]
        click.echo(f"""demo data created:
  app key:  {key}
  users:    alice (id {alice.id}, password alice-password), bob (id {bob.id}, password bob-password),
            carol (password carol-password); /docs' examples work as alice on this data""")
    click.echo(ensure_web_app_key())
    if key is None:
        # The demo key was shown once, on the first run; the page's key works for curl too.
        key = web_page_key()
        if key:
            click.echo(f"  app key:  {key}   (the web page's; use it for the curl examples)")
    click.echo(f"""
open in a browser:
  {base}/          the chat: log in as alice here and as bob in a private window
  {base}/docs      the API documentation (Swagger UI; Authorize to try calls)
  {base}/metrics   Prometheus metrics (answered to this machine only)""")
    if key:
        click.echo(f"""
or try it with curl (the README walks through the whole flow):
  curl -s -X POST {base}/auth/login -H 'X-APP-Key: {key}' \\
       -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}'""")


@assets_cli.command("sweep")
def sweep_assets() -> None:
    """Delete uploads never sent in a message within ASSET_UNUSED_TTL_SECONDS (or whose
    messages are all gone), and remove deleted files still stored (beat does this in
    production; `make run` at start)."""
    done = assets.sweep()
    click.echo(
        f"{done['expired']} uploads no message uses deleted, {done['purged']} deleted files removed "
        "from storage"
    )


def web_page_key() -> str | None:
    """The app key the web page is given (``WEB_APP_KEY``, else the key file), if live."""
    config = current_app.config
    key = config.get("WEB_APP_KEY")
    if not key and config.get("WEB_APP_KEY_FILE"):
        try:
            key = Path(config["WEB_APP_KEY_FILE"]).read_text().strip()
        except OSError:
            key = None
    return key if key and credentials.app_key_is_valid(key) else None


def register_cli(app: Flask) -> None:
    for command in (app_key_cli, bot_cli, secrets_cli, counters_cli, search_cli, assets_cli, demo):
        app.cli.add_command(command)
