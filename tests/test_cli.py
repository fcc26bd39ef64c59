"""Operator commands (``chat.cli``): long ones show progress and end with a summary (``flask
counters rebuild``); credential commands create, list without secrets, reset and revoke, and
every credential event is an audit line; ``flask demo`` seeds once and says where to go."""

from __future__ import annotations

import logging
import re

from sqlalchemy import select, update

from chat.extensions import db
from chat.models import AppKey, ConversationMember
from chat.services import accounts, credentials
from devstack import wait_until
from tests.realtime import Reader, open_stream


def test_counters_rebuild_shows_progress_and_a_summary(app, make_user):
    people = [make_user() for _ in range(3)]
    for other in people[1:]:
        people[0].send(people[0].open_with(other), "hi")
    # Break one counter, as a bug or a hand edit would.
    db.session.execute(
        update(ConversationMember).where(ConversationMember.user_id == people[1].id).values(unread_count=7)
    )
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["counters", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "checking member rows" in result.output  # the bar's label (the bar itself needs a terminal)
    summary = result.output.strip().splitlines()[-1]
    assert re.fullmatch(
        r"counters rebuilt in \d+\.\d s: 4 checked, 1 member rows were wrong and are fixed", summary
    ), summary


# ---- credentials over their life -----------------------------------------------------------


def _run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_app_key_list_shows_name_created_last_used_and_never_the_key(app, client, alice, app_key):
    unused = accounts.create_app_key("unused")
    output = _run(app, "app-key", "list")
    lines = {line.split()[0]: line for line in output.strip().splitlines()[1:]}
    assert "never" in lines["unused"] and "live" in lines["unused"]
    assert "never" not in lines[db.session.scalar(select(AppKey.name).where(AppKey.name != "unused"))]
    assert app_key not in output and unused not in output
    accounts.revoke_app_key("unused")
    assert "revoked" in _run(app, "app-key", "list")


def test_a_bot_token_reset_cuts_the_old_one_off_and_keeps_the_bot(app, client, alice, caplog):
    caplog.set_level(logging.INFO, logger="chat.audit")
    bot, old = accounts.create_bot("echobot")
    bot_id = bot.id
    as_bot = {"Authorization": f"Bot {old}"}
    chat = client.post("/api/v3/user-chat/create", headers=as_bot, json={"target_id": alice.id})
    assert chat.status_code == 200
    stream = Reader(open_stream(client, old))

    output = _run(app, "bot", "token", "reset", "echobot")
    new = output.strip().splitlines()[-1]
    assert new != old and len(new) > 30
    assert stream.events(1)[-1]["event"] == "stream.ended"
    assert client.get("/api/v3/user/me", headers=as_bot).status_code == 401
    me = client.get("/api/v3/user/me", headers={"Authorization": f"Bot {new}"})
    assert me.status_code == 200 and me.json["data"]["id"] == str(bot_id)
    chats = client.get("/api/v3/user-chat/list", headers={"Authorization": f"Bot {new}"}).json["data"][
        "items"
    ]
    assert [c["code"] for c in chats] == [chat.json["data"]["code"]]

    events = [record.getMessage() for record in caplog.records if record.name == "chat.audit"]
    assert any(line.startswith("audit credential.created kind=bot_token owner=echobot") for line in events)
    assert any(line.startswith("audit credential.first_used kind=bot_token") for line in events)
    assert any(
        line.startswith("audit credential.revoked kind=bot_token") and "reason=reset" in line
        for line in events
    )
    assert any(line.startswith("audit credential.reset kind=bot_token owner=echobot") for line in events)
    assert not any(old in line or new in line for line in events)


def test_a_revoked_bot_token_stops_until_reset_and_list_says_so(app, client):
    _, token = accounts.create_bot("quietbot")
    output = _run(app, "bot", "token", "revoke", "quietbot")
    assert output.strip() == "bot 'quietbot': 1 token revoked"
    assert client.get("/api/v3/user/me", headers={"Authorization": f"Bot {token}"}).status_code == 401
    assert "no live token" in _run(app, "bot", "list")
    missing = app.test_cli_runner().invoke(args=["bot", "token", "reset", "nobody"])
    assert missing.exit_code != 0 and "no bot named 'nobody'" in missing.output


def test_a_bot_token_can_expire(app, client):
    output = _run(app, "bot", "create", "shortbot", "--expires-days", "0.00001")  # under a second
    token = output.strip().splitlines()[-1]
    wait_until(
        lambda: client.get("/api/v3/user/me", headers={"Authorization": f"Bot {token}"}).status_code == 401,
        10,
        what="the token to expire",
    )
    assert "UTC" in _run(app, "bot", "list").splitlines()[1]


def test_cli_app_key_bot_and_counters(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["app-key", "create", "mobile"])
    assert created.exit_code == 0
    key = created.output.strip().splitlines()[-1]
    assert credentials.app_key_is_valid(key)
    assert runner.invoke(args=["app-key", "create", "mobile"]).exit_code != 0
    assert runner.invoke(args=["app-key", "revoke", "mobile"]).exit_code == 0
    assert not credentials.app_key_is_valid(key)

    bot = runner.invoke(args=["bot", "create", "helper-bot"])
    assert bot.exit_code == 0
    token = bot.output.strip().splitlines()[-1]
    user, _ = credentials.user_for_token(token)
    assert user.is_bot and user.username == "helper-bot"

    assert "0 member rows" in runner.invoke(args=["counters", "rebuild"]).output


def test_demo_seeds_an_empty_database_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"])
    assert "app key" in first.output and accounts.count_users() == 3
    assert "already has users" in runner.invoke(args=["demo"]).output


def test_a_second_demo_run_still_prints_an_app_key_for_curl(app, tmp_path):
    app.config["WEB_APP_KEY_FILE"] = str(tmp_path / "web-app-key")
    runner = app.test_cli_runner()
    runner.invoke(args=["demo"])
    second = runner.invoke(args=["demo"]).output
    key = (tmp_path / "web-app-key").read_text().strip()
    assert f"app key:  {key}" in second and f"X-APP-Key: {key}" in second
    login = app.test_client().post(
        "/auth/login", headers={"X-APP-Key": key}, json={"username": "alice", "password": "alice-password"}
    )
    assert login.status_code == 200


def test_flask_demo_alone_shows_flask_runs_port(app):
    runner = app.test_cli_runner()
    output = runner.invoke(args=["demo"], env={"PORT": "", "FLASK_RUN_PORT": "5099"}).output
    assert "http://127.0.0.1:5099/docs" in output and ":5000" not in output
    output = runner.invoke(args=["demo", "--port", "6001"], env={"PORT": "5077"}).output
    assert "http://127.0.0.1:6001/docs" in output


def test_the_demo_banner_shows_the_port_make_run_serves_on(app):
    runner = app.test_cli_runner()
    output = runner.invoke(args=["demo"], env={"PORT": "5077"}).output
    assert "http://127.0.0.1:5077/auth/login" in output and ":5000" not in output
