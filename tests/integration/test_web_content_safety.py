"""Stored content never runs in the page: a real browser (Playwright driving Debian's
chromium) opens a conversation whose every piece of sender-chosen content is markup or a
script URL (text, image and file URLs, KMarkdown, a card, an edit, the sender's nickname),
sent through both APIs to the production stack (gunicorn, a Celery worker, Redis). The page
shows each as text and nothing runs: no dialog, no global set, no element made from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from devstack import ApiUser, start_server, start_worker
from tests.conftest import live_credential
from tests.integration.test_web_browser import CHROMIUM, SETTLE_MS

pytestmark = pytest.mark.integration


RUN = "window.__pwned=1"
TEXTS = [
    f'<img src=x onerror="{RUN}">',
    f"<script>{RUN}</script>",
    f"<svg onload={RUN}>",
]
IMAGE_URL = f'https://example.invalid/a.png"><img/src=x/onerror={RUN}>'  # no whitespace: a valid URL
FILE_URL = f'https://example.invalid/f"onmouseover="{RUN}'
KMARKDOWN = f"**<img src=x onerror={RUN}>** [click](https://example.invalid/k)"
CARD = json.dumps(
    [
        {
            "type": "card",
            "modules": [
                {
                    "type": "section",
                    "text": {
                        "type": "kmarkdown",
                        "content": f"<iframe srcdoc='<script>parent.{RUN}</script>'>",
                    },
                }
            ],
        }
    ]
)
EDITED = f"<body onload={RUN}>edited"
NICKNAME = f"<img src=x onerror={RUN}>"


@pytest.fixture
def site(live_env, tmp_path):
    env = dict(live_env, SSE_HEARTBEAT_SECONDS="2")
    env["WEB_APP_KEY"] = live_credential(env, "app-key", "web")
    worker = start_worker(env, tmp_path)
    server, base = start_server(env, tmp_path)
    try:
        yield base, env["WEB_APP_KEY"]
    finally:
        server.stop()
        worker.stop()


def test_no_stored_content_runs_in_the_page(site):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does), or set CHROMIUM")
    base, app_key = site
    # The sender, with a nickname that is markup, speaking both APIs.
    assert (
        requests.post(
            f"{base}/auth/register",
            headers={"X-APP-Key": app_key},
            timeout=10,
            json={"username": "mallory", "password": "mallory-password", "nickname": NICKNAME},
        ).status_code
        == 200
    )
    login = requests.post(
        f"{base}/auth/login",
        headers={"X-APP-Key": app_key},
        timeout=10,
        json={"username": "mallory", "password": "mallory-password"},
    ).json()["data"]
    classic = {"X-APP-Key": app_key, "X-APP-Session": login["session"]}
    kook = {"Authorization": f"Bearer {login['session']}"}
    victim = ApiUser(base, app_key, "victim", password="victim-password")

    def classic_send(conversation, kind, content):
        response = requests.post(
            f"{base}/message",
            headers=classic,
            timeout=10,
            json={"conversationid": conversation, "type": kind, "content": content, "time": "1700000000000"},
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def kook_send(kind, content):
        response = requests.post(
            f"{base}/api/v3/direct-message/create",
            headers=kook,
            timeout=10,
            json={"target_id": str(victim.id), "type": kind, "content": content},
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]["msg_id"]

    conversation = requests.post(
        f"{base}/conversation", headers=classic, timeout=10, json={"passiveuser": victim.id, "time": "1"}
    ).json()["data"]["conversationid"]
    for text in TEXTS:
        classic_send(conversation, -1, text)
    classic_send(conversation, -2, IMAGE_URL)
    classic_send(conversation, -4, FILE_URL)
    kook_send(9, KMARKDOWN)
    kook_send(10, CARD)
    edited = kook_send(1, "to be edited")
    assert (
        requests.post(
            f"{base}/api/v3/direct-message/update",
            headers=kook,
            timeout=10,
            json={"msg_id": edited, "content": EDITED},
        ).status_code
        == 200
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            dialogs, errors = [], []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + "/")
            page.get_by_role("textbox", name="Username", exact=True).fill("victim")
            page.get_by_role("textbox", name="Password", exact=True).fill("victim-password")
            page.get_by_role("button", name="Log in", exact=True).click()
            conversations = page.get_by_role("list", name="Conversations")
            chat = conversations.get_by_role("listitem").filter(has_text="mallory")
            expect(chat).to_be_visible(timeout=SETTLE_MS)
            expect(chat).to_contain_text(NICKNAME)  # the nickname, as text
            chat.get_by_role("button").first.click()
            log = page.get_by_role("log", name="Messages")
            for shown in (*TEXTS, KMARKDOWN, EDITED):
                expect(log).to_contain_text(shown, timeout=SETTLE_MS)
            expect(log).to_contain_text("parent.window.__pwned", timeout=SETTLE_MS)  # the card
            # Media from elsewhere is a link (its URL whole, as an attribute), never loaded.
            expect(log.get_by_role("link", name="open image")).to_be_visible()
            hrefs = [link.get_attribute("href") for link in log.locator("a").all()]
            assert IMAGE_URL in hrefs and FILE_URL in hrefs
            # Give any injected handler its chance (image errors, loads) before looking.
            page.wait_for_load_state("networkidle")
            assert page.evaluate("window.__pwned") is None
            assert dialogs == [] and errors == []
            # Nothing in the log was made from content: no script, frame, svg or body, and no
            # image at all (the image message's URL is not ours, so it is not fetched).
            assert log.locator("script, iframe, svg, body").count() == 0
            assert log.locator("img").count() == 0
        finally:
            browser.close()
