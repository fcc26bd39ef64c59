"""The web page in a real browser: Playwright driving Debian's chromium (``executable_path``,
so nothing is downloaded), against the production stack on real processes: gunicorn, a
Celery worker and Redis, on this pass's database (SQLite or PostgreSQL). The page is given
its app key the way production gives it (``WEB_APP_KEY`` from ``flask app-key create web``).

Two browser contexts are two people, alice and bob, each with their own cookies. Every
control is found by its role and name, the handles a screen reader uses. On every screen the
flow passes through, the page must not scroll sideways (``scrollWidth`` against the viewport
width: under phone emulation chromium widens ``innerWidth`` to the content) and an axe-core
scan (``axe.min.js`` from the npm package, vendored beside this file) finds nothing serious
or critical.

Screenshots go to the test's temporary directory, and also to ``WEB_SCREENSHOTS`` when set
(``WEB_SCREENSHOTS=docs`` refreshes the ones in the README).
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from devstack import ROOT, ApiUser, free_port, start_server, start_worker, wait_until
from tests.conftest import live_credential

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).with_name("axe.min.js")
# How long a wait for what the page shows lasts before the test gives up: generous, since
# the waits are for things to happen, not for how fast (the benchmark measures speed). With
# both passes side by side the machine's cores are busy throughout, and a page's round trip
# through the server, Redis and the worker can take seconds: ten was once not enough on CI.
SETTLE_MS = 30000
AUTH_CACHE_SECONDS = 1
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
# The phone also runs in the dark colour scheme, so both schemes get the contrast checks.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 2,
    "color_scheme": "dark",
}


class Site(str):
    """The base URL, and the page's app key."""

    app_key: str


@contextmanager
def running_site(live_env: dict[str, str], log_dir: Path, web_processes: int = 1):
    """gunicorn with ``web_processes`` workers and a Celery worker, given the web page's app
    key; yields the base URL."""
    # Each web process reuses a credential lookup for AUTH_CACHE_SECONDS: a logout counts at
    # once in the process that served it, in the other one within that time (kept short here).
    env = dict(
        live_env,
        SSE_HEARTBEAT_SECONDS="2",
        METRICS_TOKEN="browser-test-metrics",
        AUTH_CACHE_SECONDS=str(AUTH_CACHE_SECONDS),
    )
    env["WEB_APP_KEY"] = live_credential(env, "app-key", "web")
    worker = start_worker(env, log_dir)
    server, base = start_server(env, log_dir, workers=web_processes)
    site = Site(base)
    site.app_key = env["WEB_APP_KEY"]
    try:
        yield site
    finally:
        server.stop()
        worker.stop()


@pytest.fixture(scope="module")
def site(module_live_env, tmp_path_factory):
    """One site for the module's tests that keep to people of their own (a server and a
    worker cost 4 to 5 CPU-seconds to start)."""
    with running_site(module_live_env, tmp_path_factory.mktemp("site")) as site:
        yield site


@pytest.fixture
def site_of_two_processes(live_env, tmp_path):
    """A site of its own with two web processes, for what must hold across them."""
    with running_site(live_env, tmp_path, web_processes=2) as site:
        yield site


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module's tests (each person still gets a context of their own:
    cookies, storage and service workers): a launch costs 1 to 1.5 CPU-seconds."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does), or set CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    # Every expect() without a timeout of its own waits as long as the explicit ones: the
    # library's 5 s default would be a timed assertion in disguise on a loaded machine.
    expect.set_options(timeout=SETTLE_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Person:
    """One browser context (its own cookies and storage) with the page open."""

    def __init__(
        self, browser, base: str, name: str, shots: list[Path], shot_dir: Path, device: dict | None = None
    ):
        self.name = name
        self.device = device or DESKTOP
        self.context = browser.new_context(**self.device)
        # Injected by the DevTools protocol, which the page's CSP does not govern.
        self.context.add_init_script(path=str(AXE))
        self.base = base
        self.errors: list[str] = []
        self.open_page()
        self.shots, self.shot_dir = shots, shot_dir

    def open_page(self, path: str = "/"):
        """The page in a new tab of this context (what a reload or a second tab sees)."""
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(self.base + path)

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
        return self.messages.locator("li.message").filter(has=self.page.locator(".body", has_text=text))

    def alert(self):
        return self.page.get_by_role("alert")

    def register(self, password: str):
        self.role("textbox", "Username").fill(self.name)
        self.role("textbox", "Password").fill(password)
        self.role("button", "Register").click()

    def log_in(self, password: str):
        self.role("textbox", "Username").fill(self.name)
        self.role("textbox", "Password").fill(password)
        self.role("button", "Log in").click()

    def send(self, text: str):
        box = self.role("textbox", "Message")
        box.fill(text)
        box.press("Enter")

    def act(self, text: str, action: str):
        """Pick ``action`` from the actions menu of the message showing ``text``."""
        item = self.message(text)
        item.get_by_role("button", name="Message actions").click()
        item.get_by_role("menuitem", name=action, exact=True).click()

    def fits(self, screen: str) -> None:
        """No sideways scrolling, and no serious or critical accessibility violations."""
        width = self.device["viewport"]["width"]
        scroll = self.page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, (
            f"{self.name}, {screen}: the page is {scroll} px wide in a {width} px viewport"
        )
        violations = self.page.evaluate("""async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
                .map((v) => v.id + ": " + v.help + " -> "
                    + v.nodes.map((n) => n.target.join(" ")).join(", "));
        }""")
        assert violations == [], f"{self.name}, {screen}: {violations}"

    def screenshot(self, label: str):
        path = self.shot_dir / f"{len(self.shots) + 1:02d}-{self.name}-{label}.png"
        self.page.screenshot(path=str(path))
        self.shots.append(path)

    def session_token(self) -> str:
        """The session cookie's value (the page's script cannot read it; the test harness can)."""
        return next(c["value"] for c in self.context.cookies() if c["name"] == "chat_web_session")


def copy_shots(shots: list[Path], named: dict[str, str]) -> None:
    """Copy the shots whose name ends with a key of ``named`` to ``WEB_SCREENSHOTS`` (when
    set) under the value: the README's pictures."""
    target = os.environ.get("WEB_SCREENSHOTS")
    if target:
        out = Path(target) if Path(target).is_absolute() else ROOT / target
        out.mkdir(parents=True, exist_ok=True)
        for path in shots:
            for ending, name in named.items():
                if path.stem.endswith(ending):
                    shutil.copy(path, out / name)


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_two_people_chat_live_in_two_browsers(site_of_two_processes, browser, tmp_path, device):
    """alice and bob, each in a browser, through a chat's whole life; two web processes, so a
    logout and a stream's end are seen across them."""
    from playwright.sync_api import expect

    site = base = site_of_two_processes
    shots: list[Path] = []
    alice = Person(browser, base, "alice", shots, tmp_path, device=device)
    bob = Person(browser, base, "bob", shots, tmp_path, device=device)
    alice.fits("login")
    for person in (alice, bob):
        person.register(f"{person.name}-password")
        expect(person.role("button", "Log out")).to_be_visible()
    alice.fits("empty list")
    # Hooks, not stubs: controls for what this server does not offer stay hidden.
    for path, control in (("/push/config", "Notifications"), ("/asset", "Attach a file")):
        offered = requests.get(f"{base}{path}", timeout=10).status_code != 404
        if not offered:
            expect(alice.role("button", control)).to_be_hidden()
    if requests.get(f"{base}/message/search", timeout=10).status_code == 404:
        expect(alice.role("searchbox", "Search messages")).to_be_hidden()
    # The session is not in script-readable storage: an HttpOnly cookie the script cannot see.
    assert alice.page.evaluate("document.cookie") == ""
    assert alice.page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    cookie = next(c for c in alice.context.cookies() if c["name"] == "chat_web_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # alice starts a conversation with bob by his username; the URL names it.
    alice.role("textbox", "Username to message").fill("bob")
    alice.role("button", "Start conversation").click()
    expect(alice.role("heading", "Conversation with bob")).to_be_visible()
    assert re.search(r"#c=[0-9a-f]{32}$", alice.page.url)
    alice.send("hello bob")
    expect(alice.message("hello bob")).to_be_visible()

    # bob sees it arrive without reloading, with an unread badge, a preview and the title count.
    expect(bob.conversation_with("alice")).to_be_visible(timeout=SETTLE_MS)
    expect(bob.conversation_with("alice").locator(".badge")).to_have_text("1 unread", timeout=SETTLE_MS)
    expect(bob.conversation_with("alice").locator(".preview")).to_have_text("hello bob")
    expect(bob.page).to_have_title("(1) chat")
    bob.screenshot("unread-badge")

    # Opening it shows the message and clears the badge; alice sees it marked read.
    bob.conversation_with("alice").get_by_role("button").click()
    expect(bob.message("hello bob")).to_be_visible()
    expect(bob.conversation_with("alice").locator(".badge")).to_have_count(0)
    expect(bob.page).to_have_title("chat")
    expect(alice.message("hello bob").locator(".receipt")).to_have_text("read", timeout=SETTLE_MS)
    bob.fits("conversation")

    # bob types: alice sees "bob is typing…" while she has the conversation open.
    bob.role("textbox", "Message").press_sequentially("so")
    expect(alice.page.get_by_text("bob is typing…")).to_be_visible(timeout=SETTLE_MS)
    # Shift+Enter adds a line; Enter sends both lines as one message.
    box = bob.role("textbox", "Message")
    box.press_sequentially(" line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    box.press("Enter")
    expect(alice.message("line two")).to_be_visible(timeout=SETTLE_MS)
    assert alice.message("line two").locator(".body").inner_text() == "so line one\nline two"
    expect(alice.page.get_by_text("bob is typing…")).to_have_count(0)  # his message ends it

    # alice replies to it, quoting it; bob sees the quote and can jump to the quoted message.
    alice.act("line two", "Reply")
    expect(alice.page.get_by_text(re.compile("^Replying to bob"))).to_be_visible()
    alice.send("a reply")
    reply = bob.message("a reply")
    expect(reply.locator(".quote")).to_contain_text("line two", timeout=SETTLE_MS)
    reply.get_by_role("button", name="Go to quoted message").click()
    expect(bob.message("line two")).to_be_focused()

    # Reactions: bob reacts, alice sees the chip; bob takes it back, it goes on both sides.
    bob.act("a reply", "React 👍")
    expect(bob.message("a reply").get_by_role("button", name=re.compile("^👍 1, yours"))).to_be_visible()
    expect(alice.message("a reply").get_by_role("button", name=re.compile("^👍 1"))).to_be_visible(
        timeout=SETTLE_MS
    )
    bob.message("a reply").get_by_role("button", name=re.compile("^👍 1, yours")).click()
    expect(bob.message("a reply").locator(".chip")).to_have_count(0)
    expect(alice.message("a reply").locator(".chip")).to_have_count(0, timeout=SETTLE_MS)

    # alice edits her message: both sides show the new text, marked edited. She sends her next
    # message at once, while the edit may still be on its way: it is a new message, not a
    # second edit.
    alice.act("a reply", "Edit")
    alice.role("textbox", "Message").fill("a better reply")
    alice.role("textbox", "Message").press("Enter")

    # A link in text is a link that opens elsewhere without the page's address; an image URL
    # from elsewhere is a link too, never loaded by the reader's browser.
    alice.send("see https://example.org/page and https://example.org/cat.png")
    expect(alice.message("a better reply").locator(".edited")).to_be_visible(timeout=SETTLE_MS)
    expect(bob.message("a better reply").locator(".edited")).to_be_visible(timeout=SETTLE_MS)
    link = bob.message("see https").get_by_role("link", name="https://example.org/page")
    expect(link).to_have_attribute("rel", "noopener noreferrer", timeout=SETTLE_MS)
    external = f"{base.replace('127.0.0.1', 'localhost')}/docs/assets/favicon-32x32.png"
    alice.page.evaluate(
        """async ([code, url]) => {
        await fetch('/api/v3/direct-message/create', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-Chat-Web': '1'},
            body: JSON.stringify({chat_code: code, type: 2, content: url})});
    }""",
        [alice.page.url.split("#c=")[1], external],
    )
    expect(bob.messages.get_by_role("link", name="open image")).to_be_visible(timeout=SETTLE_MS)
    expect(bob.messages.locator("img")).to_have_count(0)
    alice.screenshot("conversation")
    bob.screenshot("conversation")

    # Delete for everyone asks first; cancelled, nothing happens; confirmed, a tombstone on
    # both sides.
    bob.act("so line one", "Delete for everyone")
    expect(
        bob.role("dialog", "Delete this message for everyone? It disappears from both sides.")
    ).to_be_visible()
    bob.fits("delete confirmation")
    bob.role("button", "Cancel").click()
    expect(bob.message("so line one")).to_be_visible()
    bob.act("so line one", "Delete for everyone")
    bob.role("button", "Delete").click()
    expect(bob.messages.get_by_text("This message was deleted")).to_be_visible()
    expect(alice.messages.get_by_text("This message was deleted")).to_be_visible(timeout=SETTLE_MS)
    expect(alice.message("so line one")).to_have_count(0)
    # Delete for me: gone from alice's page only.
    alice.act("hello bob", "Delete for me")
    expect(alice.message("hello bob")).to_have_count(0)
    expect(bob.message("hello bob")).to_be_visible()

    # A reload keeps both logged in, with the open conversation still open and its draft.
    alice.role("textbox", "Message").fill("half-written thought")
    for person, other in ((alice, "bob"), (bob, "alice")):
        person.page.reload()
        expect(person.role("heading", f"Conversation with {other}")).to_be_visible()
        expect(person.page.get_by_text(f"Logged in as {person.name}")).to_be_visible()
    expect(alice.role("textbox", "Message")).to_have_value("half-written thought")
    alice.role("textbox", "Message").fill("")

    # alice blocks bob: bob's composer says why he cannot write (once his page looks again).
    alice.role("button", "Block").click()
    expect(alice.page.get_by_text("You have blocked this person")).to_be_visible()
    expect(alice.role("textbox", "Message")).to_be_disabled()
    bob.page.reload()
    expect(bob.page.get_by_text("This person does not accept your messages")).to_be_visible()
    expect(bob.role("textbox", "Message")).to_be_disabled()
    bob.fits("blocked composer")
    alice.role("button", "Unblock").click()
    expect(alice.role("textbox", "Message")).to_be_enabled()
    bob.page.reload()
    expect(bob.role("textbox", "Message")).to_be_enabled()

    # Friends: alice asks from the conversation, bob accepts in People.
    alice.role("button", "Add friend").click()
    expect(alice.alert()).to_contain_text("Friend request sent to bob")
    bob.role("button", "People").click()
    requests_list = bob.role("list", "Friend requests")
    expect(requests_list).to_contain_text("alice")
    bob.fits("people")
    requests_list.get_by_role("button", name="Accept").click()
    expect(bob.role("list", "Friends")).to_contain_text("alice")
    bob.role("button", "Close people").click()
    alice.page.reload()
    expect(alice.role("heading", "Conversation with bob")).to_be_visible()
    expect(alice.role("button", "Add friend")).to_be_hidden()

    # Back and forward move between the list and the conversation (on a phone, one column:
    # the list fills the screen again).
    alice.page.go_back()
    if device is PHONE:
        expect(alice.conversations).to_be_visible()
        expect(alice.role("heading", "Conversation with bob")).to_be_hidden()
    else:
        expect(alice.role("heading", "Pick a conversation")).to_be_visible()
    alice.page.go_forward()
    expect(alice.role("heading", "Conversation with bob")).to_be_visible()

    # The other side's online dot follows bob's page: closed, he goes offline (once the
    # server notices, at the next heartbeat); opened again, online.
    if device is PHONE:  # one column: the list is behind the open conversation
        alice.role("button", "Back to conversations").click()
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("online")
    bob.page.close()
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("offline", timeout=SETTLE_MS)
    bob.open_page()
    expect(bob.role("button", "Log out")).to_be_visible()  # the session survives a new tab too
    expect(alice.conversation_with("bob").locator(".dot")).to_have_text("online", timeout=SETTLE_MS)
    if device is PHONE:
        alice.conversation_with("bob").get_by_role("button").click()
        expect(alice.role("heading", "Conversation with bob")).to_be_visible()

    # Errors are shown to the person: a failed send says so and retries with the same nonce.
    alice.context.route("**/api/v3/direct-message/create", lambda route: route.abort())
    alice.send("into the void")
    expect(alice.alert()).to_contain_text("cannot be reached")
    expect(alice.message("into the void").locator(".receipt")).to_have_text("not sent")
    alice.screenshot("error-shown")
    alice.context.unroute("**/api/v3/direct-message/create")
    alice.message("into the void").get_by_role("button", name="Retry").click()
    expect(alice.message("into the void").locator(".receipt")).to_have_text(re.compile("sent|read"))
    expect(bob.role("button", "Log out")).to_be_visible()

    # Logging out ends the session on the server and stays out after a reload.
    token = alice.session_token()
    alice.role("button", "Log out").click()
    expect(alice.role("button", "Log in")).to_be_visible()
    alice.page.reload()
    expect(alice.role("button", "Log in")).to_be_visible()
    # Refused by both web processes once the one that did not serve the logout has let its
    # cached lookup go (AUTH_CACHE_SECONDS): each new connection may reach either of them.
    wait_until(
        lambda: all(
            requests.get(
                f"{base}/api/v3/user/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).status_code
            == 401
            for _ in range(4)
        ),
        SETTLE_MS / 1000,
        interval=0.2,
        what="the ended session to be refused everywhere",
    )

    # A session that ends elsewhere: bob's page says so and shows the login form.
    revoked = requests.post(
        f"{base}/auth/logout", headers={"X-APP-Key": site.app_key, "X-APP-Session": bob.session_token()}
    )
    assert revoked.status_code == 200, revoked.text
    # His open event stream ends at once and the page says so (no action of his needed).
    expect(bob.role("button", "Log in")).to_be_visible(timeout=SETTLE_MS)
    expect(bob.alert()).to_contain_text("session has ended")

    assert alice.errors == [] and bob.errors == [], (alice.errors, bob.errors)
    assert len(shots) == 4 and all(path.stat().st_size > 10_000 for path in shots)
    if device is DESKTOP:
        copy_shots(shots, {"alice-conversation": "web-desktop.png"})


def test_a_cookie_without_the_page_header_is_not_a_credential(site, browser, tmp_path):
    """What a form on another site could make the browser send (the cookie, no X-Chat-Web
    header) authenticates nothing; the page's own calls do."""
    person = Person(browser, site, "carol", [], tmp_path)
    person.register("carol-password")
    from playwright.sync_api import expect

    expect(person.role("button", "Log out")).to_be_visible()
    statuses = person.page.evaluate("""async () => {
        const plain = await fetch('/conversation', {headers: {'X-APP-Key': document.querySelector(
            'meta[name="chat-app-key"]').content}});
        const kook = await fetch('/api/v3/user/me');
        const page = await fetch('/api/v3/user/me', {headers: {'X-Chat-Web': '1'}});
        return [plain.status, kook.status, page.status];
    }""")
    assert statuses == [401, 401, 200]


def test_on_a_phone_the_list_and_the_conversation_each_fill_the_screen(site, browser, tmp_path):
    from playwright.sync_api import expect

    shots: list[Path] = []
    phoebe = ApiUser(site, site.app_key, "phoebe", password="phoebe-password")
    philip = ApiUser(site, site.app_key, "philip")
    cid = phoebe.open_with(philip)
    philip.send(cid, "hi phoebe, a long line without spaces: " + "x" * 120)
    philip.send(cid, "and a link https://example.org/" + "y" * 80)
    phone = Person(browser, site, "phoebe", shots, tmp_path, device=PHONE)
    phone.fits("login")
    phone.log_in("phoebe-password")
    expect(phone.conversation_with("philip")).to_be_visible()
    phone.fits("list")
    phone.screenshot("phone-list")
    phone.conversation_with("philip").get_by_role("button").tap()
    expect(phone.role("heading", "Conversation with philip")).to_be_visible()
    expect(phone.conversations).to_be_hidden()  # one column: the conversation only
    expect(phone.message("hi phoebe")).to_be_visible()
    phone.send("hello from the phone")
    expect(phone.message("hello from the phone").locator(".receipt")).to_have_text(
        re.compile("^(sent|read)$")
    )
    phone.fits("conversation")
    for name in ("Send", "Back to conversations"):
        size = phone.role("button", name).bounding_box()
        assert size["height"] >= 44 and size["width"] >= 44, (name, size)
    phone.screenshot("phone-conversation")
    phone.message("hello from the phone").get_by_role("button", name="Message actions").tap()
    phone.fits("message actions")
    phone.page.keyboard.press("Escape")
    phone.role("button", "People").tap()
    phone.fits("people")
    phone.role("button", "Close people").tap()
    phone.role("button", "Back to conversations").tap()
    expect(phone.conversations).to_be_visible()
    phone.fits("list again")
    assert phone.errors == []
    copy_shots(shots, {"phone-conversation": "web-phone.png"})


def test_history_pages_in_older_messages_on_scroll(site, browser, tmp_path):
    """The newest page is at the bottom; scrolling to the top loads older ones in order,
    until the beginning of the conversation."""
    from playwright.sync_api import expect

    hazel = ApiUser(site, site.app_key, "hazel", password="hazel-password")
    hector = ApiUser(site, site.app_key, "hector")
    cid = hazel.open_with(hector)
    for n in range(70):  # more than two of the page's pages (30 each)
        hazel.send(cid, f"note {n:02d}")

    person = Person(browser, site, "hazel", [], tmp_path)
    person.log_in("hazel-password")
    expect(person.conversation_with("hector").locator(".preview")).to_have_text(
        "note 69"
    )  # from the list route
    person.conversation_with("hector").get_by_role("button").click()
    items = person.messages.locator("li.message")
    expect(items).to_have_count(30)
    expect(items.last).to_contain_text("note 69")
    expect(person.message("note 39")).to_have_count(0)

    for expected in (60, 70):
        person.page.get_by_role("log", name="Messages").evaluate("box => { box.scrollTop = 0; }")
        expect(items).to_have_count(expected)
    texts = items.locator(".body").all_inner_texts()
    assert texts == [f"note {n:02d}" for n in range(70)], texts
    expect(person.page.get_by_text("This is the beginning of the conversation.")).to_be_visible()
    # Consecutive messages from one person are one group: the author is named once.
    expect(person.messages.locator(".author")).to_have_count(1)

    # The keyboard alone: Enter opens a message's menu on its first item, arrows move, Escape
    # closes it back onto its button; Reply puts the cursor in the composer, Escape cancels.
    last = person.message("note 69")
    toggle = last.get_by_role("button", name="Message actions")
    toggle.focus()
    person.page.keyboard.press("Enter")
    expect(last.get_by_role("menuitem", name="Reply")).to_be_focused()
    person.page.keyboard.press("ArrowDown")
    expect(last.get_by_role("menuitem", name="React 👍")).to_be_focused()
    person.page.keyboard.press("Escape")
    expect(toggle).to_be_focused()
    expect(last.get_by_role("menu")).to_be_hidden()
    person.page.keyboard.press("Enter")
    person.page.keyboard.press("Enter")  # Reply, the first item
    expect(person.role("textbox", "Message")).to_be_focused()
    expect(person.page.get_by_text("Replying to hazel: note 69")).to_be_visible()
    person.page.keyboard.press("Escape")
    expect(person.page.get_by_text("Replying to hazel: note 69")).to_be_hidden()

    # Search snippets: the answer's code-point offsets become <mark>s, and text stays text.
    snippet = person.page.evaluate("""async () => {
        const {highlighted} = await import('/web/static/js/search.js');
        const {linkified} = await import('/web/static/js/dom.js');
        const box = document.createElement('div');
        box.append(linkified('javascript:alert(1) <i>x</i> https://example.org/a).'));
        return [highlighted('a😀<b>x</b>c', [[1, 2], [2, 5], [9, 99]]).innerHTML, box.innerHTML];
    }""")
    assert snippet == [
        "a<mark>😀</mark><mark>&lt;b&gt;</mark>x&lt;/b<mark>&gt;c</mark>",
        'javascript:alert(1) &lt;i&gt;x&lt;/i&gt; <a href="https://example.org/a" target="_blank" '
        'rel="noopener noreferrer">https://example.org/a</a>).',
    ], snippet

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


def _png(width: int, height: int) -> bytes:
    """A real PNG of one colour, made here (no image library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + b"\x30\x80\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_attachments_upload_show_inline_and_say_why_when_refused(live_env, browser, tmp_path):
    """An image from the attach button shows as its thumbnail and opens full size; a file
    shows as a download card; one over the limit says why. Needs the upload routes."""
    from playwright.sync_api import expect

    port = free_port()  # asset URLs start with the public address: this server's own
    env = dict(
        live_env,
        ASSET_MAX_FILE_BYTES="4000",
        ASSET_DIR=str(tmp_path / "assets"),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    env["WEB_APP_KEY"] = live_credential(env, "app-key", "web")
    worker = start_worker(env, tmp_path)
    server, base = start_server(env, tmp_path, port=port)
    try:
        if requests.get(f"{base}/asset", timeout=10).status_code == 404:
            pytest.skip("this server has no upload route (POST /asset) yet")
        alice = ApiUser(base, env["WEB_APP_KEY"], "alice", password="alice-password")
        bob = ApiUser(base, env["WEB_APP_KEY"], "bob")
        cid = alice.open_with(bob)
        bob.send(cid, "send me the picture")
        person = Person(browser, base, "alice", [], tmp_path)
        person.log_in("alice-password")
        person.conversation_with("bob").get_by_role("button").click()
        expect(person.role("button", "Attach a file")).to_be_enabled()

        person.page.locator("#file-input").set_input_files(
            files=[{"name": "photo.png", "mimeType": "image/png", "buffer": _png(64, 48)}]
        )
        picture = person.messages.get_by_role("button", name="Open image from alice full size")
        expect(picture).to_be_visible(timeout=SETTLE_MS)
        source = picture.locator("img").get_attribute("src")
        assert "/files/" in source and "thumb=1" in source, source
        expect(picture.locator("img")).to_have_js_property("naturalWidth", 64)  # loaded: our own URL
        picture.click()
        expect(person.page.locator("#image-full")).to_have_attribute("src", source.split("?")[0])
        person.role("button", "Close image").click()

        person.page.locator("#file-input").set_input_files(
            files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"plain words\n" * 10}]
        )
        card = person.messages.locator(".file-card").last
        expect(card.get_by_role("link")).to_have_attribute("download", re.compile("notes"), timeout=SETTLE_MS)
        person.page.locator("#file-input").set_input_files(
            files=[{"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * 9000}]
        )
        expect(person.alert()).to_contain_text("too large", timeout=SETTLE_MS)
        person.fits("attachments")

        sent = [
            m for m in bob.call("GET", "/message", params={"conversationid": cid}) if m["type"] in (-2, -4)
        ]
        assert {m["type"] for m in sent} == {-2, -4} and all("/files/" in m["content"] for m in sent)
        assert person.errors == []
    finally:
        server.stop()
        worker.stop()


def test_search_shows_marked_snippets_and_opens_the_message(site, browser, tmp_path):
    """A search box (when the server searches) lists results with the matches marked; a
    result opens its conversation at that message, even one further back than the first page."""
    from playwright.sync_api import expect

    if requests.get(f"{site}/message/search", timeout=10).status_code == 404:
        pytest.skip("this server has no search route (GET /message/search) yet")
    sasha = ApiUser(site, site.app_key, "sasha", password="sasha-password")
    simon = ApiUser(site, site.app_key, "simon")
    cid = sasha.open_with(simon)
    simon.send(cid, "the <b>lighthouse</b> keeper waves")
    for n in range(40):
        sasha.send(cid, f"filler {n:02d}")
    person = Person(browser, site, "sasha", [], tmp_path)
    person.log_in("sasha-password")
    expect(person.conversation_with("simon")).to_be_visible()
    person.role("searchbox", "Search messages").fill("lighthouse")
    person.role("searchbox", "Search messages").press("Enter")
    results = person.role("list", "Search results list")
    expect(results.get_by_role("listitem")).to_have_count(1, timeout=SETTLE_MS)
    expect(results.locator("mark")).to_have_text("lighthouse")
    expect(results).to_contain_text("the <b>lighthouse</b> keeper")  # text, never markup
    person.fits("search results")
    results.get_by_role("button").click()
    expect(person.role("heading", "Conversation with simon")).to_be_visible()
    expect(person.message("lighthouse")).to_be_focused(timeout=SETTLE_MS)
    assert person.errors == []


@pytest.fixture
def site_of_its_own(live_env, tmp_path):
    """A site on an origin no other test's page has opened."""
    with running_site(live_env, tmp_path) as site:
        yield site


def test_the_service_worker_shows_collapsed_notifications_and_retracts_them(
    site_of_its_own, browser, tmp_path
):
    """What the page's service worker does with a Web Push payload while the page is not
    showing: a notification per chat (its count), closed again by a ``retract`` for that chat.
    The push is delivered through the DevTools protocol (a push service is outside the test).
    The site is its own: the protocol reports the service workers of every context of the
    browser, so on an origin other tests' pages had opened, the registration found could be
    theirs."""
    import json

    from devstack import wait_until

    site = site_of_its_own
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=site)
    page = context.new_page()
    page.goto(site + "/")
    cdp = context.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"])
    )
    cdp.send("ServiceWorker.enable")
    page.evaluate(
        "navigator.serviceWorker.register('/sw.js', {scope: '/'}).then(() => navigator.serviceWorker.ready)"
    )
    wait_until(
        lambda: any(not r.get("isDeleted") for r in registrations), 10, what="the worker's registration"
    )
    registration = next(r for r in registrations if not r.get("isDeleted"))["registrationId"]

    def push(payload: dict) -> None:
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": site, "registrationId": registration, "data": json.dumps(payload)},
        )

    def shown() -> list:
        return page.evaluate("""navigator.serviceWorker.getRegistration('/').then((r) => r.getNotifications())
            .then((all) => all.map((n) => [n.title, n.body, n.tag]))""")

    page.goto("about:blank")  # the page is closed: the worker shows what comes
    push(
        {
            "title": "alice",
            "body": "are you there? (+2 more)",
            "tag": "c0ffee",
            "chat_code": "c0ffee",
            "conversationid": -1,
            "count": 3,
            "badge": 3,
            "retract": False,
        }
    )
    push(
        {"title": "carol", "body": "hello", "tag": "beef", "chat_code": "beef", "count": 1, "retract": False}
    )
    page.goto(site + "/sw.js")  # same origin again, to ask the registration (a script is no window)
    wait_until(lambda: len(shown()) == 2, 10, what="two notifications")
    assert sorted(shown()) == [["alice", "are you there? (+2 more)", "c0ffee"], ["carol", "hello", "beef"]]
    push({"tag": "c0ffee", "chat_code": "c0ffee", "retract": True})  # read elsewhere, or deleted
    wait_until(lambda: shown() == [["carol", "hello", "beef"]], 10, what="the retracted one to close")
    context.close()
