/*
 * One message on screen: its bubble, body (text, media, location), quote, reactions, receipt
 * and actions menu. Messages from the two places they come from (a KOOK history page, an
 * event on the stream) are first made one shape by `fromHistory` / `fromEvent`.
 */

import { el, clockTime, linkified, ownAsset, fileName, humanSize } from "./dom.js";

const CLASSIC_KINDS = { "-1": "text", "-2": "image", "-3": "video", "-4": "file", "-5": "location", "-6": "audio" };
const KOOK_KINDS = { 1: "text", 2: "image", 3: "video", 4: "file", 8: "audio", 9: "kmarkdown", 10: "card" };
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🎉"];

function quoteFrom(quote) {
  if (!quote || !quote.id) return null;
  const author = quote.author || {};
  return { id: quote.id, content: quote.content || "", kind: KOOK_KINDS[quote.type] || "text",
    authorName: author.nickname || author.username || "" };
}

/** A message from GET /api/v3/direct-message/list. */
export function fromHistory(item) {
  return {
    key: item.id, chatCode: item.chat_code, kind: item.kind || KOOK_KINDS[item.type] || "text",
    content: item.content, createdAt: item.create_at, updatedAt: item.updated_at || 0,
    authorId: String(item.author_id), quote: quoteFrom(item.quote),
    reactions: (item.reactions || []).map((r) => ({ emoji: r.emoji.name || r.emoji.id, count: r.count, me: r.me })),
    read: Boolean(item.read_status), deleted: false,
  };
}

/** A message from a message.created / message.updated event. */
export function fromEvent(data) {
  let kind = CLASSIC_KINDS[String(data.type)] || "text";
  if (data.kook_type === 9) kind = "kmarkdown";
  if (data.kook_type === 10) kind = "card";
  return {
    key: data.messagekey || data.msg_id, chatCode: data.chat_code, cid: data.conversationid, kind,
    content: data.content, createdAt: data.created_at, updatedAt: data.updated_at || 0,
    authorId: String(data.id), authorName: data.nickname || data.username, quote: quoteFrom(data.quote),
    reactions: [], read: Boolean(data.isread), deleted: Boolean(data.deleted), nonce: data.nonce,
  };
}

export function previewText(message) {
  if (!message) return "";
  if (message.deleted) return "Message deleted";
  switch (message.kind) {
    case "image": return "Photo";
    case "video": return "Video";
    case "audio": return "Audio";
    case "file": return "File: " + fileName(message.content);
    case "location": return "Location";
    case "card": return "Card";
    default: return message.content.replace(/\s+/g, " ").slice(0, 80);
  }
}

function locationLink(content) {
  const [lat, lng] = content.split(",").map((part) => part.trim());
  const href = "https://www.openstreetmap.org/?mlat=" + encodeURIComponent(lat) + "&mlon=" +
    encodeURIComponent(lng) + "#map=15/" + encodeURIComponent(lat) + "/" + encodeURIComponent(lng);
  return el("a", { href, target: "_blank", rel: "noopener noreferrer", text: "Location " + lat + ", " + lng });
}

/** A link to media somewhere else: never fetched by this page, opened only if the person clicks. */
function elsewhere(label, url) {
  let host = "";
  try {
    host = new URL(url).host;
  } catch (error) {
    host = "another site";
  }
  return el("div", { class: "elsewhere" },
    el("span", { text: label + " from " + host + " (not loaded): " }),
    el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: "open " + label.toLowerCase() }));
}

function mediaBody(message, authorName, actions) {
  const url = message.content;
  const ours = ownAsset(url);
  if (!/^https?:\/\//i.test(url)) return el("span", { text: url });
  if (message.kind === "image") {
    if (!ours) return elsewhere("Image", url);
    const thumb = el("img", { src: url + (url.includes("?") ? "&" : "?") + "thumb=1", alt: "Image from " + authorName,
      loading: "lazy", referrerPolicy: "no-referrer" });
    thumb.addEventListener("error", () => {
      if (!thumb.dataset.full) {
        thumb.dataset.full = "1";
        thumb.src = url; // no thumbnail for this one: the image itself
      }
    }, { once: false });
    return el("button", { type: "button", class: "image-button", "aria-label": "Open image from " + authorName + " full size",
      onclick: () => actions.openImage(url, "Image from " + authorName) }, thumb);
  }
  if (message.kind === "video" || message.kind === "audio") {
    const label = message.kind === "video" ? "Video" : "Audio";
    if (!ours) return elsewhere(label, url);
    return el(message.kind, { src: url, controls: true, preload: "metadata", "aria-label": label + " from " + authorName });
  }
  const name = fileName(url);
  const size = message.size ? humanSize(message.size) : "";
  return el("div", { class: "file-card" },
    el("span", { class: "file-icon", "aria-hidden": "true", text: "📄" }),
    el("div", {},
      ours ? el("a", { href: url, download: name, rel: "noopener noreferrer", text: name })
        : el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: name + " (elsewhere)" }),
      size ? el("span", { class: "hint", text: " " + size }) : null));
}

export function messageBody(message, authorName, actions) {
  const body = el("div", { class: "body" });
  if (message.deleted) {
    body.classList.add("tombstone");
    body.textContent = "This message was deleted";
    return body;
  }
  if (["image", "video", "audio", "file"].includes(message.kind)) body.append(mediaBody(message, authorName, actions));
  else if (message.kind === "location" && /^[+-]?[\d.]+\s*,\s*[+-]?[\d.]+$/.test(message.content)) {
    body.append(locationLink(message.content));
  } else body.append(linkified(message.content));
  return body;
}

function reactionChips(message, actions) {
  if (!message.reactions.length) return null;
  const box = el("div", { class: "reactions", role: "group", "aria-label": "Reactions" });
  for (const reaction of message.reactions) {
    if (reaction.count <= 0) continue;
    box.append(el("button", { type: "button", class: "chip" + (reaction.me ? " mine" : ""), "aria-pressed": reaction.me ? "true" : "false",
      "aria-label": reaction.emoji + " " + reaction.count + (reaction.me ? ", yours: press to take back" : ", press to add yours"),
      text: reaction.emoji + " " + reaction.count, onclick: () => actions.toggleReaction(message, reaction.emoji) }));
  }
  return box;
}

function quoteBlock(quote, actions) {
  return el("div", { class: "quote" },
    el("span", { class: "quote-author", text: quote.authorName || "" }),
    el("span", { class: "quote-text", text: quote.kind === "text" || quote.kind === "kmarkdown"
      ? quote.content.slice(0, 200) : previewText({ kind: quote.kind, content: quote.content }) }),
    el("button", { type: "button", class: "link-button", text: "Go to quoted message",
      onclick: () => actions.scrollTo(quote.id) }));
}

function menu(message, mine, actions) {
  const items = [];
  const add = (label, handler) => items.push(el("button", { type: "button", role: "menuitem", text: label,
    onclick: () => { close(); handler(); } }));
  if (!message.deleted && !message.pending) {
    add("Reply", () => actions.reply(message));
    for (const emoji of QUICK_REACTIONS) {
      items.push(el("button", { type: "button", role: "menuitem", class: "emoji", "aria-label": "React " + emoji, text: emoji,
        onclick: () => { close(); actions.toggleReaction(message, emoji); } }));
    }
    if (mine && (message.kind === "text" || message.kind === "kmarkdown")) add("Edit", () => actions.edit(message));
    add("Copy", () => actions.copy(message));
  }
  if (!message.pending) add("Delete for me", () => actions.deleteForMe(message));
  if (mine && !message.deleted && !message.pending) add("Delete for everyone", () => actions.deleteForEveryone(message));
  const list = el("div", { class: "menu", role: "menu", "aria-label": "Message actions", hidden: true }, ...items);
  const toggle = el("button", { type: "button", class: "menu-toggle icon", "aria-label": "Message actions",
    "aria-haspopup": "menu", "aria-expanded": "false", text: "⋯" });
  function close() {
    list.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
  }
  toggle.addEventListener("click", () => {
    const opening = list.hidden;
    document.querySelectorAll(".menu:not([hidden])").forEach((open) => {
      open.hidden = true;
      const other = open.previousElementSibling;
      if (other) other.setAttribute("aria-expanded", "false");
    });
    list.hidden = !opening;
    toggle.setAttribute("aria-expanded", String(opening));
    if (opening && list.firstElementChild) list.firstElementChild.focus();
  });
  list.addEventListener("keydown", (event) => {
    const buttons = Array.from(list.querySelectorAll("button"));
    const at = buttons.indexOf(document.activeElement);
    if (event.key === "Escape") {
      close();
      toggle.focus();
    } else if (event.key === "ArrowDown" || event.key === "ArrowRight") {
      event.preventDefault();
      buttons[(at + 1) % buttons.length].focus();
    } else if (event.key === "ArrowUp" || event.key === "ArrowLeft") {
      event.preventDefault();
      buttons[(at - 1 + buttons.length) % buttons.length].focus();
    }
  });
  return el("div", { class: "menu-box" }, toggle, list);
}

/**
 * The list item for a message. `context`: {mine, authorName, showAuthor, receipt}; `actions`:
 * the handlers the menu, chips and quote call.
 */
export function messageItem(message, context, actions) {
  const { mine, authorName } = context;
  const li = el("li", { class: "message " + (mine ? "mine" : "theirs"), "data-key": message.key });
  if (message.pending) li.classList.add("pending");
  if (message.deleted) li.classList.add("deleted");
  const bubble = el("div", { class: "bubble" });
  if (context.showAuthor) bubble.append(el("div", { class: "author", text: mine ? "You" : authorName }));
  if (message.quote && !message.deleted) bubble.append(quoteBlock(message.quote, actions));
  bubble.append(messageBody(message, authorName, actions));
  const meta = el("div", { class: "meta" });
  if (message.updatedAt && !message.deleted) meta.append(el("span", { class: "edited", text: "edited" }));
  const at = message.createdAt;
  const time = el("time", { text: clockTime(at) });
  if (at) time.dateTime = new Date(at).toISOString();
  meta.append(time);
  if (mine && !message.deleted) {
    let text = message.read ? "read" : "sent";
    if (message.pending) text = "sending…";
    if (message.failed) text = "not sent";
    meta.append(el("span", { class: "receipt", text }));
  }
  if (message.failed) {
    meta.append(el("button", { type: "button", class: "retry", text: "Retry", onclick: () => actions.retry(message) }));
  }
  bubble.append(meta);
  const chips = message.deleted ? null : reactionChips(message, actions);
  li.append(bubble);
  if (chips) li.append(chips);
  li.append(menu(message, mine, actions));
  return li;
}
