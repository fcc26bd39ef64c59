/*
 * Notifications: the unread count in the title; a notification while the tab is hidden
 * (shown by this page); Web Push through the service worker (/sw.js) when the page is
 * closed. The button asks for permission only when pressed; without Web Push on the server
 * (GET /push/config answers 404, or says it is off) the button stays hidden. A click on the
 * worker's notification opens its chat in this page when the worker asks ("open-chat").
 */

import { $ } from "./dom.js";
import { api } from "./api.js";
import { previewText } from "./message-view.js";

let pushConfig = null;
let workerHeard = false;
const shown = new Map(); // chat code -> the notification this page shows for it

export function setUnreadTitle(count) {
  document.title = count > 0 ? "(" + count + ") chat" : "chat";
}

/** A message arrived: tell the person when they cannot see the page (and let them open it). */
export function notifyMessage(message, fromName) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const notification = new Notification(fromName || "New message", {
    body: previewText(message), tag: message.chatCode, renotify: true,
  });
  shown.set(message.chatCode, notification);
  notification.addEventListener("click", () => {
    window.focus();
    location.hash = "c=" + message.chatCode;
    notification.close();
  });
}

/** The chat was read elsewhere, or its message deleted: its notification goes (here and in the worker's). */
export function retractNotification(chatCode) {
  const notification = shown.get(chatCode);
  if (notification) {
    notification.close();
    shown.delete(chatCode);
  }
  if ("serviceWorker" in navigator && navigator.serviceWorker.controller) {
    navigator.serviceWorker.getRegistration("/").then(async (registration) => {
      if (!registration) return;
      for (const old of await registration.getNotifications({ tag: chatCode })) old.close();
    }).catch(() => {});
  }
}

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function subscribe() {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    $("notify-button").textContent = "Notifications blocked";
    return;
  }
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: keyBytes(pushConfig.webpush.vapid_public_key),
    });
  }
  await api("POST", "/push/devices", { kind: "webpush", subscription: subscription.toJSON() });
  $("notify-button").textContent = "Notifications on";
  $("notify-button").disabled = true;
}

/** A click on the worker's notification opens its chat here (the URL says which chat is open). */
function followWorker() {
  if (workerHeard) return;
  workerHeard = true;
  navigator.serviceWorker.addEventListener("message", (event) => {
    const data = event.data || {};
    if (data.type === "open-chat" && /^[0-9a-f]{1,64}$/.test(String(data.chat_code))) {
      location.hash = "c=" + data.chat_code;
    }
  });
  navigator.serviceWorker.startMessages(); // a listener added with addEventListener does not start them
}

export async function initNotifications(state, report) {
  const button = $("notify-button");
  button.hidden = true;
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return;
  followWorker();
  try {
    pushConfig = await api("GET", "/push/config");
  } catch (error) {
    return; // no notifications on this server (404) or not now: no button
  }
  if (!pushConfig || !pushConfig.webpush || !pushConfig.webpush.enabled) return;
  button.hidden = false;
  if (Notification.permission === "granted") {
    const registration = await navigator.serviceWorker.getRegistration("/");
    if (registration && await registration.pushManager.getSubscription()) {
      button.textContent = "Notifications on";
      button.disabled = true;
      return;
    }
  }
  if (!button.dataset.wired) {
    button.dataset.wired = "1";
    button.addEventListener("click", () => subscribe().catch(report));
  }
}
