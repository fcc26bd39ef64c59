/*
 * Small DOM helpers. Text from the network only ever goes in through textContent or an
 * attribute the browser does not run: never parsed as markup.
 */

/** An element with properties, attributes (keys starting "aria-", "data-", "role") and children. */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("aria-") || key.startsWith("data-") || key === "role" || key === "for") {
      node.setAttribute(key, value === true ? "true" : String(value));
    } else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function sameDay(a, b) {
  return new Date(a).toDateString() === new Date(b).toDateString();
}

export function formatTime(ms) {
  if (!ms) return "";
  const date = new Date(ms);
  return sameDay(ms, Date.now())
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString();
}

export function clockTime(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function dayLabel(ms) {
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (sameDay(ms, today)) return "Today";
  if (sameDay(ms, yesterday)) return "Yesterday";
  return new Date(ms).toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

export function timeElement(ms, text) {
  const node = el("time", { text: text || formatTime(ms) });
  if (ms) node.dateTime = new Date(ms).toISOString();
  return node;
}

/** A person's picture when it is one of ours, else their initials on a colour from their id. */
export function avatar(user) {
  const name = (user && (user.nickname || user.username)) || "?";
  const box = el("span", { class: "avatar", "aria-hidden": "true" });
  if (user && user.avatar && ownAsset(user.avatar)) {
    box.append(el("img", { src: user.avatar, alt: "" }));
    return box;
  }
  const letters = name.trim().split(/\s+/).slice(0, 2).map((part) => Array.from(part)[0] || "").join("");
  box.textContent = letters.toUpperCase() || "?";
  let hash = 0;
  for (const ch of String((user && user.id) || name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  box.dataset.hue = String(hash % 8);
  return box;
}

/** Whether a URL is a file this service stores (same origin, under /files/): only those load inline. */
export function ownAsset(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.origin === location.origin && parsed.pathname.startsWith("/files/");
  } catch (error) {
    return false;
  }
}

const LINK = /\bhttps?:\/\/[^\s<>"']+/gi;

/** Text with its http(s) URLs as links (only those two schemes can match: no script URL ever becomes a link). */
export function linkified(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    let url = match[0].replace(/[.,;:!?)\]]+$/, "");
    if (match.index > last) fragment.append(text.slice(last, match.index));
    fragment.append(el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url }));
    last = match.index + url.length;
  }
  if (last < text.length) fragment.append(text.slice(last));
  return fragment;
}

export function fileName(url) {
  try {
    const name = decodeURIComponent(new URL(url, location.href).pathname.split("/").pop() || "");
    return name || "file";
  } catch (error) {
    return "file";
  }
}

export function humanSize(bytes) {
  if (!bytes && bytes !== 0) return "";
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
}
