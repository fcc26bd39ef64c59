"""Operator commands: ``flask app-key``, ``flask bot``, ``flask counters``, ``flask demo``.

Commands that create a secret print it once, as the last line of their output.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from chat.errors import ServiceError
from chat.services import accounts, counters

app_key_cli = AppGroup("app-key", help="Create and revoke app keys (X-APP-Key).")
bot_cli = AppGroup("bot", help="Create bot users and their tokens.")
counters_cli = AppGroup("counters", help="Check and repair read/unread counters.")

DEMO_USERS = (("alice", "alice-password"), ("bob", "bob-password"))


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


@bot_cli.command("create")
@click.argument("username")
@click.option("--nickname", default="", help="Display name (defaults to the username).")
def create_bot(username: str, nickname: str) -> None:
    """Create a bot user; prints its token once, as the last line."""
    try:
        user, raw = accounts.create_bot(username, nickname)
    except ServiceError as err:
        _fail(err)
    click.echo(f"bot {user.username!r} created with id {user.id}; its token is shown only now:")
    click.echo(raw)


@counters_cli.command("rebuild")
def rebuild_counters() -> None:
    """Recompute every unread count and latest message time from the messages."""
    changed = counters.rebuild_all()
    click.echo(f"counters rebuilt; {changed} member rows were wrong and are fixed")


@click.command("demo")
def demo() -> None:
    """On an empty database: create a demo app key and two users, and show how to call the API."""
    if accounts.count_users():
        click.echo("the database already has users; demo data is only made on an empty one")
        return
    key = accounts.create_app_key("demo")
    users = [accounts.register(name, password) for name, password in DEMO_USERS]
    alice, bob = users
    click.echo(f"""demo data created:
  app key:  {key}
  users:    alice (id {alice.id}, password alice-password), bob (id {bob.id}, password bob-password)

try it (the README walks through the whole flow):
  curl -s -X POST http://127.0.0.1:5000/auth/login -H 'X-APP-Key: {key}' \\
       -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}'
""")


def register_cli(app: Flask) -> None:
    for command in (app_key_cli, bot_cli, counters_cli, demo):
        app.cli.add_command(command)
