"""The web page in a real browser: Playwright driving Debian's chromium (``executable_path``,
so nothing is downloaded), against the production stack on real processes: gunicorn, a
Celery worker and Redis, on this pass's database (SQLite or PostgreSQL). The page is given
its app key the way production gives it (``WEB_APP_KEY`` from ``flask app-key create web``).

Two browser contexts are two people, alice and bob, each with their own storage. Every
control is found by its role and name, the handles a screen reader uses.

Screenshots go to the test's temporary directory, and also to ``WEB_SCREENSHOTS`` when set
(``WEB_SCREENSHOTS=docs`` refreshes the one in the README).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from devstack import ROOT, ApiUser, flask_command, start_server, start_worker

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PUSH_WITHIN_MS = 2000  # what the page promises: a message shows up on the other side within 2 s
SETTLE_MS = 10000  # for what has no promise beyond "soon" (reads travel through a worker)
AUTH_CACHE_SECONDS = 1


class Site(str):
    """The base URL, and the page's app key."""

    app_key: str


@pytest.fixture
def site(live_env, tmp_path):
    """gunicorn and a Celery worker, with the web page's app key; yields the base URL."""
    # Each web process reuses a credential lookup for AUTH_CACHE_SECONDS: a logout counts at
    # once in the process that served it, in the other one within that time (kept short here).
    env = dict(live_env, SSE_HEARTBEAT_SECONDS="2", METRICS_TOKEN="browser-test-metrics",
               AUTH_CACHE_SECONDS=str(AUTH_CACHE_SECONDS))
    env["WEB_APP_KEY"] = flask_command(env, "app-key", "create", "web").strip().splitlines()[-1]
    worker = start_worker(env, tmp_path)
    server, base = start_server(env, tmp_path)
    site = Site(base)
    site.app_key = env["WEB_APP_KEY"]
    try:
        yield site
    finally:
        server.stop()
        worker.stop()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does), or set CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Person:
    """One browser context (its own cookies and storage) with the page open."""

    def __init__(self, browser, base: str, name: str, shots: list[Path], shot_dir: Path):
        self.name = name
        self.context = browser.new_context(viewport={"width": 1100, "height": 700})
        self.base = base
        self.errors: list[str] = []
        self.open_page()
        self.shots, self.shot_dir = shots, shot_dir

    def open_page(self):
        """The page in a new tab of this context (what a reload or a second tab sees)."""
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(self.base + "/")

    def role(self, role: str, name: str):
        return self.page.get_by_role(role, name=name, exact=True)

    @property
    def conversations(self):
        return self.role("list", "Conversations")

    @property
    def messages(self):
        return self.role("log", "Messages")

    def conversation_with(self, other: str):
        return self.conversations.get_by_role("listitem").filter(has_text=other)

    def message(self, text: str):
        return self.messages.get_by_role("listitem").filter(has_text=text)

    def alert(self):
        return self.page.get_by_role("alert")

    def register(self, password: str):
        self.role("textbox", "Username").fill(self.name)
        self.role("textbox", "Password").fill(password)
        self.role("button", "Register").click()

    def send(self, text: str, kind: str = "Text"):
        self.page.get_by_label("Kind of message").select_option(label=kind)
        self.role("textbox", "Message").fill(text)
        self.role("button", "Send").click()

    def screenshot(self, label: str):
        path = self.shot_dir / f"{len(self.shots) + 1:02d}-{self.name}-{label}.png"
        self.page.screenshot(path=str(path))
        self.shots.append(path)


def test_two_people_chat_live_in_two_browsers(site, browser, tmp_path):
    from playwright.sync_api import expect

    base = site
    shots: list[Path] = []
    alice = Person(browser, base, "alice", shots, tmp_path)
    bob = Person(browser, base, "bob", shots, tmp_path)
    for person in (alice, bob):
        person.register(f"{person.name}-password")
        expect(person.role("button", "Log out")).to_be_visible()

    # alice starts a conversation with bob by his username and sends.
    alice.role("textbox", "Username to message").fill("bob")
    alice.role("button", "Start conversation").click()
    expect(alice.role("heading", "Conversation with bob")).to_be_visible()
    alice.send("hello bob")
    expect(alice.message("hello bob")).to_be_visible()

    # bob sees it arrive without reloading, with an unread badge.
    expect(bob.conversation_with("alice")).to_be_visible(timeout=PUSH_WITHIN_MS)
    expect(bob.conversation_with("alice").locator(".badge")).to_have_text("1 unread", timeout=PUSH_WITHIN_MS)
    bob.screenshot("unread-badge")

    # Opening it shows the message and clears the badge; alice sees it marked read.
    bob.conversation_with("alice").get_by_role("button").click()
    expect(bob.message("hello bob")).to_be_visible()
    expect(bob.conversation_with("alice").locator(".badge")).to_have_count(0)
    expect(alice.message("hello bob")).to_contain_text("read", timeout=SETTLE_MS)
    expect(alice.message("hello bob").locator(".receipt")).to_have_text("read")

    # An image URL is shown as an image, a location as a link.
    image_url = f"{base}/docs/assets/favicon-32x32.png"
    alice.send(image_url, kind="Image URL")
    expect(alice.messages.get_by_role("img", name="Image from alice")).to_be_visible()
    expect(bob.messages.get_by_role("img", name="Image from alice")).to_be_visible(timeout=PUSH_WITHIN_MS)
    alice.send("52.5200,13.4050", kind="Location (lat,lng)")
    expect(bob.messages.get_by_role("link", name=re.compile("Location 52.5200, 13.4050"))).to_be_visible(
        timeout=PUSH_WITHIN_MS)

    # bob answers; alice has the conversation open and sees it live; then bob deletes it for
    # everyone and it disappears from alice's page too.
    bob.send("bye alice")
    expect(alice.message("bye alice")).to_be_visible(timeout=PUSH_WITHIN_MS)
    alice.screenshot("conversation")
    bob.screenshot("conversation")
    bob.message("bye alice").get_by_role("button", name="Delete for everyone").click()
    expect(bob.message("bye alice")).to_have_count(0)
    expect(alice.message("bye alice")).to_have_count(0, timeout=SETTLE_MS)
    # Delete for me: gone from alice's page only.
    alice.message("hello bob").get_by_role("button", name="Delete for me").click()
    expect(alice.message("hello bob")).to_have_count(0)
    expect(bob.message("hello bob")).to_be_visible()

    # A reload keeps both logged in, with the conversation listed.
    for person, other in ((alice, "bob"), (bob, "alice")):
        person.page.reload()
        expect(person.role("button", "Log out")).to_be_visible()
        expect(person.conversation_with(other)).to_be_visible()
        expect(person.page.get_by_text(f"Logged in as {person.name}")).to_be_visible()

    # The other side's online dot follows bob's page without alice reloading: closed, he
    # goes offline (once the server notices, at the next heartbeat); opened again, online.
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("online")
    bob.page.close()
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("offline", timeout=SETTLE_MS)
    bob.open_page()
    expect(bob.role("button", "Log out")).to_be_visible()  # the session survives a new tab too
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("online", timeout=SETTLE_MS)

    # Errors are shown to the person: a refused send...
    alice.conversation_with("bob").get_by_role("button").click()
    alice.send("999,999", kind="Location (lat,lng)")
    expect(alice.alert()).to_contain_text("location")
    # ...and a server that cannot be reached.
    alice.context.route("**/message", lambda route: route.abort())
    alice.send("into the void")
    expect(alice.alert()).to_contain_text("cannot be reached")
    alice.screenshot("error-shown")
    alice.context.unroute("**/message")

    # Logging out ends the session on the server and stays out after a reload.
    token = alice.page.evaluate("JSON.parse(localStorage.getItem('chat.session')).session")
    alice.role("button", "Log out").click()
    expect(alice.role("button", "Log in")).to_be_visible()
    alice.page.reload()
    expect(alice.role("button", "Log in")).to_be_visible()
    time.sleep(AUTH_CACHE_SECONDS + 0.5)  # the other web process has forgotten it by now
    assert requests.get(f"{base}/api/v3/user/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    # A session that ends elsewhere: bob's next action says so and shows the login form.
    bob_token = bob.page.evaluate("JSON.parse(localStorage.getItem('chat.session')).session")
    revoked = requests.post(f"{base}/auth/logout", headers={
        "X-APP-Key": bob.page.locator('meta[name="chat-app-key"]').get_attribute("content"),
        "X-APP-Session": bob_token})
    assert revoked.status_code == 200, revoked.text
    time.sleep(AUTH_CACHE_SECONDS + 0.5)
    bob.conversation_with("alice").get_by_role("button").click()
    expect(bob.alert()).to_contain_text("session has expired")
    expect(bob.role("button", "Log in")).to_be_visible()

    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)
    assert len(shots) == 4 and all(path.stat().st_size > 10_000 for path in shots)
    target = os.environ.get("WEB_SCREENSHOTS")
    if target:
        out = Path(target) if Path(target).is_absolute() else ROOT / target
        out.mkdir(parents=True, exist_ok=True)
        for path in shots:
            shutil.copy(path, out / f"web-{path.name}")


def test_history_pages_in_older_messages_on_scroll(site, browser, tmp_path):
    """The newest page is at the bottom; scrolling to the top loads older ones (``before=``)
    in order, until the beginning of the conversation."""
    from playwright.sync_api import expect

    alice = ApiUser(site, site.app_key, "alice", password="alice-password")
    bob = ApiUser(site, site.app_key, "bob")
    cid = alice.open_with(bob)
    for n in range(70):  # more than two of the page's pages (30 each)
        alice.send(cid, f"note {n:02d}")

    person = Person(browser, site, "alice", [], tmp_path)
    person.role("textbox", "Username").fill("alice")
    person.role("textbox", "Password").fill("alice-password")
    person.role("button", "Log in").click()
    person.conversation_with("bob").get_by_role("button").click()
    items = person.messages.get_by_role("listitem")
    expect(items).to_have_count(30)
    expect(items.last).to_contain_text("note 69")
    expect(person.message("note 39")).to_have_count(0)

    for expected in (60, 70):
        person.page.get_by_role("log", name="Messages").evaluate("box => { box.scrollTop = 0; }")
        expect(items).to_have_count(expected)
    texts = items.locator(".body").all_inner_texts()
    assert texts == [f"note {n:02d}" for n in range(70)], texts
    expect(person.page.get_by_text("This is the beginning of the conversation.")).to_be_visible()

    # The API docs page renders the document in Swagger UI, with both kinds of credentials.
    person.page.get_by_role("link", name="API docs").click()
    expect(person.page.get_by_role("button", name="Authorize").first).to_be_visible()
    expect(person.page.get_by_text("/api/v3/direct-message/create", exact=True)).to_be_visible()
    person.page.get_by_role("button", name="Authorize").first.click()
    for scheme in ("AppKey", "AppSession", "Token"):
        expect(person.page.get_by_role("heading", name=re.compile(f"^{scheme} "))).to_be_visible()
    # One way in per dialect: the other spellings stay in the document, out of the dialog.
    for scheme in ("HaKey", "HaSession", "QueryToken", "MetricsToken"):
        expect(person.page.get_by_role("heading", name=re.compile(f"^{scheme} "))).to_have_count(0)
    assert person.errors == []
