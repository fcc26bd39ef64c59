/*
 * The chat page's service worker (served at /sw.js, scope /): shows Web Push notifications
 * while the page is closed or hidden, replaces or closes one when the server retracts it (the
 * message was deleted, or the chat was read elsewhere), and opens that conversation on click
 * (in the open page, which it asks with an {type: "open-chat", chat_code} message, or a new one).
 * Payload: {title, body, tag, conversationid, chat_code, count, badge, retract}.
 */
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch (error) {
    payload = {};
  }
  const tag = String(payload.tag || payload.chat_code || "chat");
  event.waitUntil((async () => {
    if (payload.retract) {
      const shown = await self.registration.getNotifications({ tag });
      for (const notification of shown) notification.close();
      return;
    }
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    if (windows.some((client) => client.visibilityState === "visible" && client.focused)) return; // the page shows it
    // The body already says how many ("3 new messages from alice", "text (+2 more)").
    await self.registration.showNotification(String(payload.title || "New message"), {
      body: String(payload.body || ""),
      tag, renotify: true, data: { chat_code: payload.chat_code || "" },
    });
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const code = String((event.notification.data || {}).chat_code || "");
  const known = /^[0-9a-f]{1,64}$/.test(code);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const page = windows.find((client) => new URL(client.url).pathname === "/");
    if (!page) return self.clients.openWindow("/" + (known ? "#c=" + code : ""));
    // The open page switches to the chat itself when asked by a message: client.navigate()
    // is refused for a page this worker does not control (one loaded with a hard reload).
    // Asked first, so a refused focus() does not stop it.
    if (known) page.postMessage({ type: "open-chat", chat_code: code });
    return page.focus();
  })());
});
