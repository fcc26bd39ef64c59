"""A real khl.py ``Bot`` against the production stack: it hears "/hello" in a private chat
through its own receiver (the WebSocket gateway, compressed or not; KOOK-format callbacks,
encrypted or not) and answers with ``msg.reply``; the user sees the answer in ``GET /message``
and on their event stream. Only the SDK's module-level API base constants are pointed at the
server; nothing else of the SDK is patched."""

# No ``from __future__ import annotations``: khl.py reads the handler's annotations as types.
import asyncio
import threading
import time
from urllib.parse import urlsplit

import pytest
from khl import Bot, Message
from khl import receiver as khl_receiver
from khl import requester as khl_requester

from devstack import ApiUser, start_server, start_worker, wait_until
from tests.conftest import live_credential
from tests.netproxy import TcpProxy

pytestmark = pytest.mark.integration


class RunningBot:
    """A khl.py Bot on an event loop of its own, in a background thread."""

    def __init__(self, token: str, **bot_kwargs):
        self.heard: list[str] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, args=(token, bot_kwargs), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self, token: str, bot_kwargs: dict) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        bot = Bot(token=token, **bot_kwargs) if token else Bot(**bot_kwargs)
        bot.loop = self._loop

        @bot.command(name="hello")
        async def hello(msg: Message):
            self.heard.append(msg.content)
            await msg.reply(f"hello, {msg.author.username}! ({len(self.heard)})")

        self._ready.set()
        try:
            self._loop.run_until_complete(bot.start())
        except RuntimeError:
            pass  # stopped by the test
        # Wind down what the SDK left running (heartbeat, receiver, sessions) on this loop.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        # Close the SDK's HTTP session here, on its own loop: otherwise HTTPRequester.__del__
        # tries it during some later garbage collection, fails (no loop), and the unraisable
        # traceback it prints can land inside another ast.parse and trip CPython 3.11's
        # "AST constructor recursion depth mismatch" in an unrelated test.
        requester = bot.client.gate.requester
        if requester._cs is not None:
            self._loop.run_until_complete(requester._cs.close())
            requester._cs = None
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def stack(live_env, tmp_path, monkeypatch):
    env = {**live_env, "WEBHOOK_ALLOW_PRIVATE": "1", "SSE_HEARTBEAT_SECONDS": "2"}
    worker = start_worker(env, tmp_path)
    server, base = start_server(env, tmp_path)
    key = live_credential(env, "app-key", "khl-bot")
    bot_token = live_credential(env, "bot", "hello-bot")
    try:
        yield base, key, bot_token, env
    finally:
        print(server.log_tail(40))  # shown when the test fails
        server.stop()
        worker.stop()


def _point_khl_at(monkeypatch, base: str) -> None:
    monkeypatch.setattr(khl_requester, "API", f"{base}/api/v3")
    monkeypatch.setattr(khl_receiver, "API", f"{base}/api/v3")


def _bot_id(user: ApiUser, bot_token: str) -> int:
    import requests

    me = requests.get(
        f"{user.base}/api/v3/user/me", headers={"Authorization": f"Bot {bot_token}"}, timeout=10
    )
    return int(me.json()["data"]["id"])


def _replies(user: ApiUser, chat: int, bot_id: int) -> list[str]:
    return [
        m["content"]
        for m in reversed(user.call("GET", "/message", params={"conversationid": chat}))
        if m["id"] == bot_id
    ]


def _streamed_replies(stream, bot_id: int, count: int, timeout: float = 30) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        try:
            _id, event, data, _at = stream.events.get(timeout=1)
        except Exception:
            continue
        if event == "message.created" and data["id"] == bot_id:
            seen.append(data["content"])
    return seen


@pytest.mark.parametrize("compress", [True, False], ids=["compress", "plain"])
def test_a_khl_bot_hears_hello_on_the_gateway_and_replies(stack, monkeypatch, compress):
    base, key, bot_token, _env = stack
    proxy = TcpProxy("127.0.0.1", urlsplit(base).port)  # the bot's only way to the server
    _point_khl_at(monkeypatch, f"http://127.0.0.1:{proxy.port}")
    user = ApiUser(base, key, "hello-user")
    bot_id = _bot_id(user, bot_token)
    chat = user.call("POST", "/conversation", json={"passiveuser": bot_id, "time": "1"})["conversationid"]
    stream = user.stream()
    bot = RunningBot(bot_token, compress=compress)
    try:
        # The bot is connected once it shows online to the user.
        wait_until(lambda: user.conversation(chat)["target_info"]["online"], 20, what="the bot online")
        user.send(chat, "/hello")
        wait_until(lambda: len(_replies(user, chat, bot_id)) == 1, 30, what="the bot's reply")
        assert _replies(user, chat, bot_id) == ["hello, hello-user! (1)"]
        assert _streamed_replies(stream, bot_id, 1) == ["hello, hello-user! (1)"]

        # The bot's connection is cut, and stays down while the user writes again.
        proxy.hold()
        wait_until(lambda: not user.conversation(chat)["target_info"]["online"], 20, what="the bot offline")
        user.send(chat, "/hello")
        wait_until(
            lambda: all(m["ispushed"] for m in user.call("GET", "/message", params={"conversationid": chat})),
            15,
            what="the push",
        )
        time.sleep(1)  # the message waits on the bus while the bot is away
        assert len(_replies(user, chat, bot_id)) == 1
        proxy.restore()
        wait_until(lambda: len(_replies(user, chat, bot_id)) == 2, 60, what="the reply after the reconnect")
        assert _replies(user, chat, bot_id) == ["hello, hello-user! (1)", "hello, hello-user! (2)"]
        assert _streamed_replies(stream, bot_id, 1) == ["hello, hello-user! (2)"]
        assert bot.heard == ["/hello", "/hello"]  # each once: nothing lost, nothing twice
    finally:
        bot.stop()
        proxy.close()


@pytest.mark.parametrize("encrypt_key", ["khl-encrypt-key-0123", ""], ids=["encrypted", "plain"])
def test_a_khl_bot_in_webhook_mode_hears_hello_and_replies(stack, monkeypatch, encrypt_key):
    import requests
    from khl import Cert

    from devstack import free_port

    base, key, bot_token, _env = stack
    _point_khl_at(monkeypatch, base)
    user = ApiUser(base, key, "hook-user")
    bot_id = _bot_id(user, bot_token)
    chat = user.call("POST", "/conversation", json={"passiveuser": bot_id, "time": "1"})["conversationid"]
    stream = user.stream()
    compress = bool(encrypt_key)  # one case each way: encrypted and deflated, plain and not
    port = free_port()
    cert = Cert(token=bot_token, verify_token="khl-verify-token", encrypt_key=encrypt_key)
    bot = RunningBot("", cert=cert, port=port, route="/khl-wh", compress=compress)
    try:

        def listening():
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                return True
            except requests.RequestException:
                return False

        wait_until(listening, 10, what="the bot's webhook receiver")
        body = {
            "url": f"http://127.0.0.1:{port}/khl-wh",
            "format": "kook",
            "verify_token": "khl-verify-token",
            "compress": compress,
        }
        if encrypt_key:
            body["encrypt_key"] = encrypt_key
        registered = requests.post(
            f"{base}/api/v3/webhooks", json=body, timeout=20, headers={"Authorization": f"Bot {bot_token}"}
        )
        assert registered.status_code == 200, registered.text
        assert registered.json()["data"]["format"] == "kook"

        user.send(chat, "/hello")
        wait_until(lambda: len(_replies(user, chat, bot_id)) == 1, 30, what="the bot's reply")
        assert _replies(user, chat, bot_id) == ["hello, hook-user! (1)"]
        assert _streamed_replies(stream, bot_id, 1) == ["hello, hook-user! (1)"]
        assert bot.heard == ["/hello"]
    finally:
        bot.stop()
