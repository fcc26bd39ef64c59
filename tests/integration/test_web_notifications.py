"""The web page's notifications end to end, in Debian's chromium (Playwright), against the
production stack on this pass's database: gunicorn, the Procfile's two Celery workers (``push``
and ``counters``; ``webhooks``, which sends device notifications), Redis, and a VAPID key set
the way production sets it (``VAPID_PRIVATE_KEY``).

What a browser cannot do here, and what the test does instead:

- **The push service.** Headless chromium subscribes at Google's push service, which this
  machine cannot reach, and could not decrypt a message sent to any other one. So the page's
  ``PushManager`` is replaced (an init script) by one that hands out a subscription made by the
  test at a local RFC 8030 push service (``tests/notifications/providers.py``:
  ``WebPushService``, which checks the VAPID signature against the server's key and decrypts
  the RFC 8291 body with the subscription's private key). Everything up to that service is
  real. The decrypted payload is then given to the page's service worker with the DevTools
  protocol's ``ServiceWorker.deliverPushMessage``: a push event the browser itself dispatches
  (trusted, with ``event.data``), where a synthetic ``PushEvent`` built inside the worker
  could not be extended with ``waitUntil``.
- **The click.** Headless chromium has no notification UI to click, and the DevTools protocol
  has no command for it, so the test dispatches a ``notificationclick`` event for the shown
  notification inside the worker. The browser grants window interaction (``client.focus()``,
  ``clients.openWindow()``) only while it dispatches a real click, so in this event
  ``focus()`` is refused: the test checks what the click does to the page (the conversation is
  opened in it), not the window's focus.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import requests
from py_vapid import Vapid

from devstack import ApiUser, start_server, start_worker, wait_until
from tests.conftest import live_credential
from tests.integration.test_web_browser import SETTLE_MS, Person, browser  # noqa: F401 (the fixture)
from tests.notifications.providers import WebPushService

pytestmark = pytest.mark.integration

NOTIFY_DELAY_SECONDS = 1  # the page does not read the chat, so a short delay changes nothing but the wait

# Replaces the browser's push subscription with the test's (SUBSCRIPTION is its toJSON()).
# It keeps the application server key the page subscribed with, for the test to compare.
FAKE_PUSH_MANAGER = """
(() => {
  if (typeof PushManager === "undefined") return;
  const json = SUBSCRIPTION;
  const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")
    + "===".slice((text.length + 3) % 4)), (c) => c.charCodeAt(0)).buffer;
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    window.subscribedWithKey = btoa(String.fromCharCode(...key)).replace(/\\+/g, "-")
      .replace(/\\//g, "_").replace(/=+$/, "");
    current = {
      endpoint: json.endpoint, expirationTime: null, options,
      getKey: (name) => bytes(json.keys[name]),
      toJSON: () => json,
      unsubscribe: async () => { current = null; return true; },
    };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


@pytest.fixture
def notifying_site(live_env, tmp_path):
    """gunicorn, and the Procfile's workers on their own queues, sending Web Push to a local
    push service (``PUSH_ALLOW_PRIVATE``); yields (base URL, the page's app key)."""
    vapid = Vapid()
    vapid.generate_keys()
    env = dict(
        live_env,
        PUSH_ALLOW_PRIVATE="1",
        NOTIFY_DELAY_SECONDS=str(NOTIFY_DELAY_SECONDS),
        VAPID_PRIVATE_KEY=vapid.private_pem().decode(),
    )
    env["WEB_APP_KEY"] = live_credential(env, "app-key", "web")
    # As the Procfile runs them: events and counters on one worker, provider calls on another.
    workers = [
        start_worker(env, tmp_path, extra_args=["-Q", queues, "-n", f"{name}-{tmp_path.name}@%h"])
        for name, queues in (("worker", "push,counters"), ("webhooks", "webhooks"))
    ]
    server, base = start_server(env, tmp_path)
    try:
        yield base, env["WEB_APP_KEY"]
    finally:
        server.stop()
        for worker in workers:
            worker.stop()


def test_a_notification_for_a_page_in_the_background_opens_its_conversation(
    notifying_site, browser, tmp_path
):
    from playwright.sync_api import expect

    base, app_key = notifying_site
    alice = ApiUser(base, app_key, "alice")
    vapid_key = alice.call("GET", "/push/config")["webpush"]["vapid_public_key"]
    with WebPushService(vapid_key) as push_service:
        subscription = push_service.subscribe()
        bob = Person(browser, base, "bob", [], tmp_path)
        bob.context.grant_permissions(["notifications"], origin=base)
        bob.context.add_init_script(
            script=FAKE_PUSH_MANAGER.replace("SUBSCRIPTION", json.dumps(subscription.json))
        )
        bob.page.reload()  # the page opened before the script was added
        bob.register("bob-password")
        expect(bob.role("button", "Log out")).to_be_visible()

        # 1. bob turns notifications on: the page subscribes with the server's VAPID key and
        # registers the subscription as a device of his.
        bob.role("button", "Notifications").click()
        expect(bob.role("button", "Notifications on")).to_be_disabled()
        assert bob.page.evaluate("window.subscribedWithKey") == vapid_key
        session = {"X-APP-Key": app_key, "X-APP-Session": bob.session_token()}
        (device,) = requests.get(f"{base}/push/devices", headers=session, timeout=10).json()["data"]
        assert (device["kind"], device["endpoint"]) == ("webpush", subscription.endpoint)
        assert device["current_session"]

        def is_ours(worker) -> bool:
            return worker.url == f"{base}/sw.js"

        worker = next(filter(is_ours, bob.context.service_workers), None) or bob.context.wait_for_event(
            "serviceworker", predicate=is_ours
        )

        # bob reloads the page bypassing the cache (Ctrl+Shift+R): a page loaded so is not
        # controlled by the worker, which must still be able to open a chat in it.
        cdp = bob.context.new_cdp_session(bob.page)
        with bob.page.expect_navigation():
            cdp.send("Page.reload", {"ignoreCache": True})
        expect(bob.role("button", "Log out")).to_be_visible()
        assert bob.page.evaluate("navigator.serviceWorker.controller") is None

        # 2. bob switches to another window. Headless chromium paints every window, so no page
        # is ever hidden (a minimized window and a background tab both stay "visible"); what it
        # does model is focus, once Playwright's focus emulation (every page focused) is off.
        # The worker shows a notification unless a page of the chat is visible and focused.
        # (Closing the page instead would leave the click only clients.openWindow(), which the
        # browser refuses in an event it did not dispatch itself.)
        cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
        elsewhere = bob.context.new_page()
        elsewhere.bring_to_front()
        wait_until(lambda: not bob.page.evaluate("document.hasFocus()"), 10, what="the page to lose focus")

        # alice writes; bob's page does not read it, so the worker notifies his device.
        me = requests.get(
            f"{base}/api/v3/user/me", headers={"Authorization": f"Bearer {bob.session_token()}"}, timeout=10
        ).json()["data"]
        conversation_id = alice.open_with(SimpleNamespace(id=int(me["id"])))
        chat_code = alice.conversation(conversation_id)["code"]
        alice.send(conversation_id, "are you there?")
        (pushed,) = wait_until(
            lambda: push_service.for_subscription(subscription), 30, what="the Web Push message"
        )
        assert push_service.refused == []
        assert pushed.notification == {
            "title": "alice",
            "body": "New message from alice",
            "tag": chat_code,
            "conversationid": conversation_id,
            "chat_code": chat_code,
            "count": 1,
            "badge": 1,
            "retract": False,
        }

        # The push service hands the message to the browser, which wakes the page's worker.
        registrations: list[dict] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        cdp.send("ServiceWorker.enable")

        def registration_id():
            bob.page.wait_for_timeout(50)  # Playwright hands over protocol events only while it runs
            return next(
                (
                    r["registrationId"]
                    for r in registrations
                    if r["scopeURL"] == f"{base}/" and not r.get("isDeleted")
                ),
                None,
            )

        registration = wait_until(registration_id, 10, what="the worker's registration")
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": base, "registrationId": registration, "data": json.dumps(pushed.notification)},
        )

        # 3. The worker shows it: the sender as the title, the chat as the tag.
        def shown() -> list:
            return worker.evaluate("""self.registration.getNotifications().then((all) => all.map(
                (n) => [n.title, n.body, n.tag, (n.data || {}).chat_code]))""")

        wait_until(shown, 10, what="the notification")
        assert shown() == [["alice", "New message from alice", chat_code, chat_code]]

        # 4. bob clicks it: his page opens the conversation with alice, with her message.
        refused = worker.evaluate(
            """async (tag) => {
            const [notification] = await self.registration.getNotifications({tag});
            const event = new NotificationEvent("notificationclick", {notification});
            let handled = Promise.resolve();
            event.waitUntil = (promise) => { handled = promise; };  // an untrusted event cannot be extended
            self.dispatchEvent(event);
            try { await handled; return null; } catch (error) { return String(error); }
        }""",
            chat_code,
        )
        assert refused in (None, "InvalidAccessError: Not allowed to focus a window."), refused
        expect(bob.page).to_have_url(re.compile(f"#c={chat_code}$"))
        expect(bob.role("heading", "Conversation with alice")).to_be_visible()
        expect(bob.message("are you there?")).to_be_visible()
        assert shown() == []  # the click closed it

        # Opening the chat read it: the device is told to take back what it showed.
        wait_until(
            lambda: any(p.notification["retract"] for p in push_service.for_subscription(subscription)),
            SETTLE_MS / 1000,
            what="the retraction",
        )
        assert push_service.refused == [] and bob.errors == []
