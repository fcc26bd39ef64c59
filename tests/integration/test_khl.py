"""The real KOOK SDK (khl.py) against a real server process: paging, chats, messages, friends,
blocks, errors, and its own RateLimiter reading our headers."""

from __future__ import annotations

import asyncio

import pytest
from khl import Cert, api
from khl import requester as khl_requester
from khl.ratelimiter import RateLimiter

from chat import create_app
from chat.extensions import db
from chat.ratelimit import bucket_id
from chat.services import accounts
from config import DevelopmentConfig, normalize_database_url
from devstack import start_server
from tests.conftest import live_credential

pytestmark = pytest.mark.integration

TARGETS = 5
PAGE_SIZE = 2


def _bot(env, name: str) -> str:
    return live_credential(env, "bot", name)


def _client(token: str) -> khl_requester.HTTPRequester:
    # The bot default (khl.Bot builds RateLimiter(start=80)), so it paces itself on our headers.
    return khl_requester.HTTPRequester(Cert(token=token), RateLimiter(start=80))


async def _close(*clients: khl_requester.HTTPRequester) -> None:
    for client in clients:
        if client._cs is not None:
            await client._cs.close()
            client._cs = None  # its __del__ would otherwise try to close it on a dead loop


async def _scenario(tokens: dict) -> dict:
    me, friend = _client(tokens["me"]), _client(tokens["friend"])
    seen: dict = {}
    try:
        seen["me"] = await me.exec_req(api.User.me())
        seen["friend"] = await friend.exec_req(api.User.me())
        targets = [seen["friend"]["id"], *tokens["targets"]]

        created = [await me.exec_req(api.UserChat.create(target_id=t)) for t in targets]
        seen["created"] = created
        seen["again"] = await me.exec_req(api.UserChat.create(target_id=targets[0]))
        seen["listed"] = await me.exec_paged_req(api.UserChat.list(), page_size=PAGE_SIZE)
        seen["view"] = await me.exec_req(api.UserChat.view(chat_code=created[0]["code"]))

        friend_id = seen["friend"]["id"]
        seen["sent_text"] = await me.exec_req(
            api.DirectMessage.create(
                type=1, target_id=friend_id, content="hello from khl.py", nonce="khl-nonce-1"
            )
        )
        seen["sent_retry"] = await me.exec_req(
            api.DirectMessage.create(
                type=1, target_id=friend_id, content="hello from khl.py", nonce="khl-nonce-1"
            )
        )
        seen["sent_kmd"] = await me.exec_req(
            api.DirectMessage.create(
                type=9, chat_code=created[0]["code"], content="**bold** move", nonce="khl-nonce-2"
            )
        )
        seen["friend_list"] = await friend.exec_req(api.DirectMessage.list(chat_code=created[0]["code"]))

        await me.exec_req(api.UserChat.delete(chat_code=created[1]["code"]))
        seen["listed_after_delete"] = await me.exec_paged_req(api.UserChat.list(), page_size=PAGE_SIZE)

        # Friends: a request by username#1234 (khl.py sends it as `_from`), accepted by the other.
        code = f"{seen['friend']['username']}#{seen['friend']['identify_num']}"
        await me.exec_req(api.Friend.request(user_code=code, _from=0))
        requests_ = await friend.request("GET", "friend", params={"type": "request"})
        seen["incoming"] = requests_["request"]
        await friend.exec_req(api.Friend.handleRequest(id=requests_["request"][0]["id"], accept=1))
        seen["friends"] = (await me.request("GET", "friend", params={"type": "friend"}))["friend"]
        seen["view_friend"] = await me.exec_req(api.UserChat.view(chat_code=created[0]["code"]))
        await me.exec_req(api.Friend.delete(user_id=friend_id))
        seen["friends_after_delete"] = (await friend.request("GET", "friend", params={"type": "friend"}))[
            "friend"
        ]

        # A block stops sending from both sides until it is lifted.
        await friend.exec_req(api.Friend.block(user_id=seen["me"]["id"]))
        seen["blocked_view"] = await me.exec_req(api.UserChat.view(chat_code=created[0]["code"]))
        for who, client, target in (("me", me, friend_id), ("friend", friend, seen["me"]["id"])):
            try:
                await client.exec_req(api.DirectMessage.create(type=1, target_id=target, content="blocked?"))
            except khl_requester.HTTPRequester.APIRequestFailed as failure:
                seen[f"blocked_send_{who}"] = failure.err_code
        await friend.exec_req(api.Friend.unblock(user_id=seen["me"]["id"]))
        seen["after_unblock"] = await friend.exec_req(
            api.DirectMessage.create(type=1, target_id=seen["me"]["id"], content="we are fine again")
        )

        try:
            await me.exec_req(api.UserChat.view(chat_code="0" * 32))
        except khl_requester.HTTPRequester.APIRequestFailed as failure:
            seen["failure"] = failure

        seen["buckets"] = dict(me._ratelimiter._api_bucket_mapping)
        seen["limits"] = {b: (d.remaining, d.reset) for b, d in me._ratelimiter._ratelimit_info.items()}
    finally:
        await _close(me, friend)
    return seen


def _more_bots(database_url: str, names: list[str]) -> list[tuple[str, str]]:
    """More bots as (id, token), made in-process: quicker than a flask command each."""

    class Config(DevelopmentConfig):
        SQLALCHEMY_DATABASE_URI = normalize_database_url(database_url)

    app = create_app(Config)
    with app.app_context():
        bots = [accounts.create_bot(name) for name in names]
        made = [(str(user.id), token) for user, token in bots]
        db.session.remove()
        db.engine.dispose()
    return made


def test_khl_sdk_against_a_live_server(live_database_url, tmp_path, monkeypatch):
    env = {"CHAT_ENV": "development", "DATABASE_URL": live_database_url, "REDIS_URL": ""}
    others = _more_bots(live_database_url, ["khl-friend", *(f"khl-target{i}" for i in range(TARGETS - 1))])
    tokens = {"me": _bot(env, "khl-me"), "friend": others[0][1], "targets": [id_ for id_, _ in others[1:]]}
    server, base = start_server(env, tmp_path)
    monkeypatch.setattr(khl_requester, "API", f"{base}/api/v3")
    try:
        seen = asyncio.run(_scenario(tokens))
    finally:
        server.stop()

    # Chats: created once per pair, listed across pages (newest activity first).
    codes = [chat["code"] for chat in seen["created"]]
    assert len(set(codes)) == TARGETS
    assert seen["again"]["code"] == codes[0]
    assert sorted(chat["code"] for chat in seen["listed"]) == sorted(codes)
    assert seen["view"]["target_info"]["id"] == seen["friend"]["id"]
    assert seen["view"]["is_friend"] is False

    # Messages: the nonce is echoed and a retry returns the original.
    assert seen["sent_text"]["nonce"] == "khl-nonce-1"
    assert seen["sent_retry"]["msg_id"] == seen["sent_text"]["msg_id"]
    items = seen["friend_list"]["items"]
    assert [(m["type"], m["content"]) for m in items] == [(1, "hello from khl.py"), (9, "**bold** move")]
    assert items[0]["author_id"] == seen["me"]["id"]

    # Deleting a chat takes it off my list only.
    assert codes[1] not in [chat["code"] for chat in seen["listed_after_delete"]]
    assert len(seen["listed_after_delete"]) == TARGETS - 1

    # Friends and blocks.
    assert [r["friend_info"]["id"] for r in seen["incoming"]] == [seen["me"]["id"]]
    assert [f["friend_info"]["id"] for f in seen["friends"]] == [seen["friend"]["id"]]
    assert seen["view_friend"]["is_friend"] is True
    assert seen["friends_after_delete"] == []
    assert seen["blocked_view"]["is_target_blocked"] is True
    assert seen["blocked_view"]["is_friend"] is False  # a block ends the friendship
    assert seen["blocked_send_me"] == 40300
    assert seen["blocked_send_friend"] == 40300
    assert seen["after_unblock"]["msg_id"]

    # A failing call raises the SDK's error with KOOK's code.
    assert seen["failure"].err_code == 40400
    assert seen["failure"].route == "user-chat/view"

    # khl.py's RateLimiter read our headers: routes map to our integer buckets.
    assert seen["buckets"]["user-chat/list"] == str(bucket_id("user-chat/list"))
    assert seen["buckets"]["direct-message/create"] == str(bucket_id("message/send"))
    remaining, reset = seen["limits"][str(bucket_id("user-chat/list"))]
    assert remaining >= 0 and reset >= 0
