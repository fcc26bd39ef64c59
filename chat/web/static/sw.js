/*
 * The chat page's service worker (served at /sw.js, scope /): shows Web Push notifications
 * while the page is closed or hidden, replaces or closes one when the server retracts it (the
 * message was deleted, or the chat was read elsewhere), and opens that conversation on click.
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
    const count = Number(payload.count) || 1;
    await self.registration.showNotification(String(payload.title || "New message"), {
      body: String(payload.body || "") + (count > 1 ? " (" + count + " messages)" : ""),
      tag, renotify: true, data: { chat_code: payload.chat_code || "" },
    });
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const code = String((event.notification.data || {}).chat_code || "");
  const target = "/" + (/^[0-9a-f]{1,64}$/.test(code) ? "#c=" + code : "");
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).pathname === "/") {
        await client.focus();
        return client.navigate(target);
      }
    }
    return self.clients.openWindow(target);
  })());
});
