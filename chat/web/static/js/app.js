/*
 * The web chat page: a client of the public API like any other, in plain ES modules.
 *
 * Classic routes for accounts, the conversation list, delete-for-me, reads and typing; KOOK
 * routes for history (with quotes, reactions and edits), sending, editing, reactions,
 * friends and blocks; the event stream (GET /api/v3/events, the session cookie) for everything
 * that happens elsewhere. The open conversation is in the URL (#c=<chat code>), so a reload
 * and back/forward keep it; drafts are kept per conversation.
 */

import { api, ApiError, APP_KEY, nonce, upload, whenSessionEnds, routeExists } from "./api.js";
import { $, el, avatar, dayLabel, formatTime, sameDay, timeElement } from "./dom.js";
import { fromEvent, fromHistory, messageItem, previewText } from "./message-view.js";
import { loadPeople, initPeople } from "./people.js";
import { initSearch } from "./search.js";
import { initNotifications, notifyMessage, retractNotification, setUnreadTitle } from "./notify.js";

const PAGE_SIZE = 30;
const LIST_PAGE = 30;
const TYPING_SEND_MS = 3000;

const state = {
  user: null,
  conversations: new Map(), // chat code -> conversation item (classic list item)
  listStart: 0,
  listDone: false,
  listLoading: false,
  current: null, // open chat code
  view: null, // the open chat's KOOK view (block flags)
  messages: new Map(), // key -> message (the open conversation)
  order: [], // keys, oldest first
  oldestKey: null,
  olderLoading: false,
  olderDone: false,
  events: null,
  lastEventId: "",
  reconnectTimer: null,
  compose: null, // {mode: "reply"|"edit", message}
  typingSentAt: 0,
  typingTimer: null,
  previews: new Map(), // chat code -> the last message this page knows of
  uploads: false,
};

// ---- status line: errors always shown, never swallowed ---------------------------------

function show(message, kind) {
  const status = $("status");
  status.textContent = message;
  status.className = kind;
  status.hidden = false;
}

export function showError(message) {
  show(message, "error");
}

function clearStatus() {
  const status = $("status");
  status.hidden = true;
  status.textContent = "";
  delete status.dataset.live;
}

export function report(error) {
  if (error instanceof ApiError) showError(error.message);
  else {
    showError("Something went wrong in this page: " + error);
    console.error(error);
  }
}

// ---- session ----------------------------------------------------------------------------

function sessionEnded() {
  forget();
  showLogin();
}

whenSessionEnds(sessionEnded);

function forget() {
  state.user = null;
  stopEvents();
  state.conversations.clear();
  state.previews.clear();
  closeConversation();
}

async function logIn(username, password) {
  const data = await api("POST", "/auth/web-session", { username, password }, { auth: false });
  state.user = data.user;
  await enterChat();
}

async function register(username, password) {
  await api("POST", "/auth/register", { username, password }, { auth: false });
  await logIn(username, password);
}

async function logOut() {
  let failure = null;
  try {
    await api("POST", "/auth/logout", {});
  } catch (error) {
    if (error.status !== 401) failure = error;
  }
  // Drafts are this person's words: they do not stay on a shared computer after logging out.
  const prefix = "chat.draft." + (state.user ? state.user.id : "") + ".";
  for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) localStorage.removeItem(key);
  forget();
  showLogin();
  if (failure) {
    showError("Logged out on this page, but the server could not be told (" + failure.message +
      "); the session ends by itself when it expires.");
  }
}

function showLogin() {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-password").value = "";
  $("login-username").focus();
  setUnreadTitle(0);
}

async function enterChat() {
  clearStatus();
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").textContent = "Logged in as " + state.user.username;
  startEvents("");
  await loadConversations(true);
  initNotifications(state, report).catch(report);
  routeExists("/asset").then((exists) => {
    state.uploads = exists;
    $("attach-button").hidden = !exists;
    updateComposer();
  });
  await followUrl();
}

// ---- conversation list --------------------------------------------------------------------

function targetName(item) {
  const target = (item && item.target_info) || {};
  return target.nickname || target.username || "unknown";
}

async function loadConversations(fresh) {
  if (fresh) {
    state.listStart = 0;
    state.listDone = false;
  }
  if (state.listLoading || state.listDone) return;
  state.listLoading = true;
  try {
    const limit = fresh ? Math.max(LIST_PAGE, state.conversations.size) : LIST_PAGE;
    const items = await api("GET", "/conversation?start=" + state.listStart + "&limit=" + Math.min(100, limit));
    if (fresh) {
      // Keep an empty new chat the server does not list until its first message.
      for (const [code, item] of state.conversations) if (item.latest_msg_time) state.conversations.delete(code);
    }
    for (const item of items) state.conversations.set(item.code, item);
    state.listStart += items.length;
    state.listDone = items.length < Math.min(100, limit);
    if (state.current) {
      const open = state.conversations.get(state.current);
      if (open && !document.hidden) open.unread_count = 0;
    }
    renderConversations();
  } finally {
    state.listLoading = false;
  }
}

function renderConversations() {
  const list = $("conversations");
  const filter = $("filter-input").value.trim().toLowerCase();
  const items = Array.from(state.conversations.values())
    .sort((a, b) => (b.latest_msg_time || 0) - (a.latest_msg_time || 0));
  list.replaceChildren(...items
    .filter((item) => !filter || targetName(item).toLowerCase().includes(filter)
      || ((item.target_info || {}).username || "").toLowerCase().includes(filter))
    .map(conversationItem));
  $("no-conversations").hidden = items.length > 0;
  $("list-state").textContent = state.listDone ? "" : "Scroll for more conversations.";
  let unread = 0;
  for (const item of items) unread += item.unread_count || 0;
  setUnreadTitle(unread);
}

function conversationItem(item) {
  const target = item.target_info || {};
  const current = item.code === state.current;
  const li = el("li", { "data-conversation": item.conversationid, class: current ? "current" : "" });
  const dot = el("span", { class: "dot " + (target.online ? "online" : "offline"), title: target.online ? "online" : "offline" },
    el("span", { class: "visually-hidden", text: target.online ? "online" : "offline" }));
  const name = el("span", { class: "name", text: target.nickname && target.nickname !== target.username
    ? target.nickname + " (@" + target.username + ")" : target.username || "unknown" });
  const known = state.previews.get(item.code);
  const listed = item.last_message;
  const newest = known && (!listed || (known.createdAt || 0) >= (listed.create_at || 0)) ? known
    : listed && { kind: listed.kind, content: listed.content, deleted: listed.deleted };
  const preview = el("span", { class: "preview", text: previewText(newest) });
  const button = el("button", { type: "button", class: "conversation", "aria-current": current ? "true" : null,
    onclick: () => navigateTo(item.code) },
  el("span", { class: "avatar-box" }, avatar(target), dot), name,
  item.latest_msg_time ? timeElement(item.latest_msg_time) : el("span"), preview);
  if (item.muted) button.append(el("span", { class: "muted-mark", text: "muted" }));
  if (item.unread_count > 0) button.append(el("span", { class: "badge", text: item.unread_count + " unread" }));
  li.append(button);
  return li;
}

async function startConversation(username) {
  username = username.trim();
  if (!username) throw new ApiError("Type the username of the person to message.", 400);
  const user = await api("GET", "/api/v3/user/view?username=" + encodeURIComponent(username));
  const view = await api("POST", "/api/v3/user-chat/create", { target_id: user.id });
  if (!state.conversations.has(view.code)) {
    state.conversations.set(view.code, {
      conversationid: null, code: view.code, unread_count: 0, latest_msg_time: 0,
      target_info: { id: Number(user.id), username: user.username, nickname: user.nickname,
        avatar: user.avatar, online: user.online },
    });
    renderConversations();
  }
  navigateTo(view.code);
}

// ---- the URL: which conversation is open ---------------------------------------------------

function codeInUrl() {
  const match = /^#c=([0-9a-f]{1,64})$/.exec(location.hash);
  return match ? match[1] : null;
}

function navigateTo(code) {
  if (codeInUrl() === code) {
    openConversation(code).catch(report);
    return;
  }
  location.hash = "c=" + code; // hashchange opens it, and back/forward come back here
}

async function followUrl() {
  if (!state.user) return;
  const code = codeInUrl();
  // Already open (or opening: a search result opens its chat and then sets the URL).
  if (code && code === state.current) return;
  if (code) await openConversation(code);
  else closeConversation();
}

// ---- one conversation ---------------------------------------------------------------------

function saveDraft() {
  if (!state.current || !state.user || state.compose) return;
  const key = "chat.draft." + state.user.id + "." + state.current;
  const text = $("message-input").value;
  if (text) localStorage.setItem(key, text);
  else localStorage.removeItem(key);
}

function restoreDraft() {
  $("message-input").value = (state.user && state.current &&
    localStorage.getItem("chat.draft." + state.user.id + "." + state.current)) || "";
  fitInput();
}

function closeConversation() {
  saveDraft();
  state.current = null;
  state.view = null;
  state.messages.clear();
  state.order = [];
  setCompose(null);
  $("message-list").replaceChildren();
  $("conversation-title").textContent = "Pick a conversation";
  $("history-state").textContent = "";
  $("typing").textContent = "";
  $("message-input").value = "";
  for (const id of ["friend-button", "block-button", "mute-button"]) $(id).hidden = true;
  $("chat-view").dataset.screen = "list";
  updateComposer();
  renderConversations();
}

async function openConversation(code) {
  if (state.current !== code) saveDraft();
  state.current = code;
  state.messages.clear();
  state.order = [];
  state.oldestKey = null;
  state.olderDone = false;
  setCompose(null);
  $("typing").textContent = "";
  $("chat-view").dataset.screen = "conversation";
  const item = state.conversations.get(code);
  $("conversation-title").textContent = "Conversation with " + (item ? (item.target_info || {}).username : "…");
  $("message-list").replaceChildren();
  restoreDraft();
  const view = await api("GET", "/api/v3/user-chat/view?chat_code=" + encodeURIComponent(code));
  if (state.current !== code) return;
  state.view = view;
  if (!state.conversations.has(code)) {
    state.conversations.set(code, { conversationid: null, code, unread_count: 0,
      latest_msg_time: view.latest_msg_time, target_info: view.target_info });
  }
  const listed = state.conversations.get(code);
  listed.target_info = Object.assign({}, view.target_info, listed.target_info || {});
  $("conversation-title").textContent = "Conversation with " + (listed.target_info.username || "…");
  updateHeader();
  updateComposer();
  // The newest page: reading it marks the conversation read on the server.
  const page = await api("GET", "/api/v3/direct-message/list?chat_code=" + encodeURIComponent(code) +
    "&page_size=" + PAGE_SIZE);
  if (state.current !== code) return;
  for (const item of page.items) remember(fromHistory(item));
  noteOldest(page.items);
  renderMessages();
  listed.unread_count = 0;
  renderConversations();
  scrollToBottom();
  if (!matchMedia("(pointer: coarse)").matches) $("message-input").focus();
}

function conversationId() {
  const item = state.conversations.get(state.current);
  return item ? item.conversationid : null;
}

function updateHeader() {
  const view = state.view;
  if (!view) return;
  $("block-button").hidden = false;
  $("block-button").textContent = view.is_blocked ? "Unblock" : "Block";
  $("friend-button").hidden = view.is_friend || view.is_blocked;
  const listed = state.conversations.get(state.current);
  $("mute-button").hidden = !listed || listed.muted === undefined;
  if (listed && listed.muted !== undefined) $("mute-button").textContent = listed.muted ? "Unmute" : "Mute";
}

function updateComposer() {
  const view = state.view;
  const open = Boolean(state.current && view);
  let note = "";
  if (view && view.is_blocked) note = "You have blocked this person: unblock them to send messages.";
  else if (view && view.is_target_blocked) note = "This person does not accept your messages (they have blocked you).";
  const usable = open && !note;
  $("composer-note").textContent = note;
  $("composer-note").hidden = !note;
  $("message-input").disabled = !usable;
  $("send-button").disabled = !usable;
  $("attach-button").disabled = !usable || !state.uploads;
}

function noteOldest(items) {
  if (items.length) state.oldestKey = items[0].id;
  state.olderDone = items.length < PAGE_SIZE;
  $("history-state").textContent = state.olderDone ? "This is the beginning of the conversation."
    : "Scroll up for older messages.";
}

function remember(message) {
  const known = state.messages.get(message.key);
  if (known) {
    // An event carries no reactions: keep the ones history gave.
    if (!message.reactions.length && known.reactions.length) message.reactions = known.reactions;
    Object.assign(known, message);
    return false;
  }
  state.messages.set(message.key, message);
  state.order.push(message.key);
  state.order.sort((a, b) => (state.messages.get(a).createdAt || 0) - (state.messages.get(b).createdAt || 0));
  return true;
}

function isMine(message) {
  return state.user && String(message.authorId) === String(state.user.id);
}

function authorNameOf(message) {
  if (isMine(message)) return state.user.nickname || state.user.username;
  const item = state.conversations.get(state.current);
  const target = (item && item.target_info) || {};
  return message.authorName || target.nickname || target.username || "them";
}

const actions = {
  reply: (message) => setCompose({ mode: "reply", message }),
  edit: (message) => setCompose({ mode: "edit", message }),
  copy: (message) => navigator.clipboard.writeText(message.content).then(
    () => show("Copied.", "notice"), () => showError("The browser did not allow copying.")),
  deleteForMe: (message) => deleteForMe(message).catch(report),
  deleteForEveryone: (message) => confirmDelete(message).catch(report),
  toggleReaction: (message, emoji) => toggleReaction(message, emoji).catch(report),
  retry: (message) => deliver(message).catch(report),
  scrollTo: (key) => scrollToMessage(key),
  openImage: (url, alt) => {
    $("image-full").src = url;
    $("image-full").alt = alt;
    $("image-dialog").showModal();
  },
};

function renderMessages() {
  const list = $("message-list");
  const nodes = [];
  let previous = null;
  for (const key of state.order) {
    const message = state.messages.get(key);
    if (!previous || !sameDay(previous.createdAt, message.createdAt)) {
      nodes.push(el("li", { class: "day", role: "presentation" },
        el("span", { text: dayLabel(message.createdAt || Date.now()) })));
    }
    const grouped = previous && previous.authorId === message.authorId && sameDay(previous.createdAt, message.createdAt)
      && (message.createdAt - previous.createdAt) < 5 * 60 * 1000 && !previous.deleted;
    nodes.push(messageItem(message, { mine: isMine(message), authorName: authorNameOf(message), showAuthor: !grouped },
      actions));
    previous = message;
  }
  list.replaceChildren(...nodes);
}

function findMessage(key) {
  return $("message-list").querySelector('li[data-key="' + CSS.escape(key) + '"]');
}

function scrollToBottom() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToMessage(key) {
  const li = findMessage(key);
  if (!li) {
    show("That message is further back: scroll up to load it.", "notice");
    return;
  }
  li.scrollIntoView({ block: "center" });
  li.classList.add("flash");
  li.tabIndex = -1;
  li.focus();
  setTimeout(() => li.classList.remove("flash"), 1500);
}

async function loadOlder() {
  if (state.olderLoading || state.olderDone || !state.current || !state.oldestKey) return;
  state.olderLoading = true;
  const code = state.current;
  const box = $("messages");
  const before = box.scrollHeight;
  try {
    const page = await api("GET", "/api/v3/direct-message/list?chat_code=" + encodeURIComponent(code) +
      "&msg_id=" + encodeURIComponent(state.oldestKey) + "&flag=before&page_size=" + PAGE_SIZE);
    if (state.current !== code) return;
    for (const item of page.items) remember(fromHistory(item));
    noteOldest(page.items);
    renderMessages();
    box.scrollTop += box.scrollHeight - before; // keep what was on screen in place
  } finally {
    state.olderLoading = false;
  }
}

// ---- composing ----------------------------------------------------------------------------

function setCompose(compose) {
  if (state.compose && state.compose.mode === "edit" && (!compose || compose.mode !== "edit")) {
    $("message-input").value = "";
    restoreDraft();
  }
  state.compose = compose;
  $("compose-context").hidden = !compose;
  if (!compose) return;
  const preview = previewText(compose.message).slice(0, 80);
  $("compose-context-text").textContent = compose.mode === "reply"
    ? "Replying to " + authorNameOf(compose.message) + ": " + preview : "Editing your message";
  if (compose.mode === "edit") {
    saveDraft();
    $("message-input").value = compose.message.content;
    fitInput();
  }
  $("message-input").focus();
}

function fitInput() {
  const input = $("message-input");
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 160) + "px";
}

async function submitComposer() {
  if (!state.current) throw new ApiError("Open a conversation first.", 400);
  const input = $("message-input");
  const content = input.value;
  if (!content.trim()) throw new ApiError("Type a message first.", 400);
  if (state.compose && state.compose.mode === "edit") {
    // Out of edit mode before the request goes, as a send does: what is typed and sent while
    // it is in flight is a new message, not a second edit of this one.
    const message = state.compose.message;
    setCompose(null);
    fitInput();
    try {
      await api("POST", "/api/v3/direct-message/update", { msg_id: message.key, content });
    } catch (error) {
      if (!input.value.trim()) { // nothing typed since: the edit comes back, to retry or cancel
        setCompose({ mode: "edit", message });
        input.value = content;
        fitInput();
      }
      throw error;
    }
    message.content = content;
    message.updatedAt = Date.now();
    renderMessages();
    return;
  }
  const quote = state.compose && state.compose.mode === "reply" ? state.compose.message : null;
  input.value = "";
  fitInput();
  setCompose(null);
  localStorage.removeItem("chat.draft." + state.user.id + "." + state.current);
  await sendNew("text", content, quote);
}

/** Show a message at once as pending, then send it; a failed one keeps its nonce for the retry. */
async function sendNew(kind, content, quote, extra) {
  const message = Object.assign({
    key: "pending-" + nonce(), chatCode: state.current, kind, content, createdAt: Date.now(), updatedAt: 0,
    authorId: String(state.user.id), quote: quote ? { id: quote.key, content: quote.content, kind: quote.kind,
      authorName: authorNameOf(quote) } : null,
    reactions: [], read: false, pending: true, failed: false, nonce: nonce(),
  }, extra || {});
  remember(message);
  renderMessages();
  scrollToBottom();
  await deliver(message);
}

const KOOK_TYPES = { text: 1, image: 2, video: 3, file: 4, audio: 8 };

async function deliver(message) {
  message.pending = true;
  message.failed = false;
  renderMessages();
  const body = { chat_code: message.chatCode, type: KOOK_TYPES[message.kind] || 1, content: message.content,
    nonce: message.nonce };
  if (message.quote) body.quote = message.quote.id;
  let sent;
  try {
    sent = await api("POST", "/api/v3/direct-message/create", body);
  } catch (error) {
    message.pending = false;
    message.failed = true;
    renderMessages();
    if (error.status === 403) refreshView().catch(() => {}); // blocked meanwhile: the composer says so
    throw error;
  }
  const pendingKey = message.key;
  state.messages.delete(pendingKey);
  state.order = state.order.filter((key) => key !== pendingKey);
  message.key = sent.msg_id;
  message.createdAt = sent.msg_timestamp || message.createdAt;
  message.pending = false;
  if (!state.messages.has(message.key)) remember(message);
  state.previews.set(message.chatCode, message);
  const item = state.conversations.get(message.chatCode);
  if (item) item.latest_msg_time = message.createdAt;
  if (message.chatCode === state.current) renderMessages();
  renderConversations();
  if (item && !item.conversationid) loadConversations(true).catch(report);
}

function sendTyping() {
  if (!state.current || !state.view || Date.now() - state.typingSentAt < TYPING_SEND_MS) return;
  state.typingSentAt = Date.now();
  api("POST", "/api/v3/user-chat/typing", { chat_code: state.current }).catch(() => {
    /* typing is a courtesy: a failure here must not bother the person */
  });
}

async function sendFile(file) {
  if (!state.current) throw new ApiError("Open a conversation first.", 400);
  const code = state.current;
  $("upload-box").hidden = false;
  $("upload-label").textContent = "Uploading " + (file.name || "image");
  $("upload-progress").value = 0;
  let asset;
  try {
    asset = await upload(file, (fraction) => { $("upload-progress").value = Math.round(fraction * 100); });
  } finally {
    $("upload-box").hidden = true;
  }
  if (state.current !== code) return;
  const kind = ["image", "video", "audio"].includes(asset.type) ? asset.type : "file";
  await sendNew(kind, asset.url, null, { size: asset.size });
}

// ---- message actions ----------------------------------------------------------------------

async function deleteForMe(message) {
  if (!message.key.startsWith("pending-")) {
    await api("DELETE", "/message", { messagekey: message.key, type: 1 });
  }
  state.messages.delete(message.key);
  state.order = state.order.filter((key) => key !== message.key);
  renderMessages();
}

function confirmDelete(message) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = "Delete this message for everyone? It disappears from both sides.";
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
  return new Promise((resolve, reject) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") {
        resolve();
        return;
      }
      api("POST", "/api/v3/direct-message/delete", { msg_id: message.key }).then(() => {
        markDeleted(message.key);
        resolve();
      }, reject);
    }, { once: true });
  });
}

function markDeleted(key) {
  const message = state.messages.get(key);
  if (!message) return;
  message.deleted = true;
  message.content = "";
  message.reactions = [];
  if (state.previews.get(message.chatCode) === message) state.previews.set(message.chatCode, message);
  renderMessages();
  renderConversations();
}

async function toggleReaction(message, emoji) {
  const found = message.reactions.find((r) => r.emoji === emoji);
  const mine = found && found.me;
  await api("POST", mine ? "/api/v3/direct-message/delete-reaction" : "/api/v3/direct-message/add-reaction",
    { msg_id: message.key, emoji });
  applyReaction(message, emoji, !mine, true);
}

function applyReaction(message, emoji, added, byMe) {
  let found = message.reactions.find((r) => r.emoji === emoji);
  if (!found) {
    if (!added) return;
    found = { emoji, count: 0, me: false };
    message.reactions.push(found);
  }
  if (byMe) {
    if (found.me === added) return; // already so (our own event after our own call)
    found.me = added;
  }
  found.count = Math.max(0, found.count + (added ? 1 : -1));
  message.reactions = message.reactions.filter((r) => r.count > 0);
  renderMessages();
}

// ---- people: block, friends ---------------------------------------------------------------

async function toggleBlock() {
  const view = state.view;
  if (!view) return;
  const userId = view.target_info.id;
  await api("POST", view.is_blocked ? "/api/v3/friend/unblock" : "/api/v3/friend/block", { user_id: userId });
  await refreshView();
}

async function refreshView() {
  if (!state.current) return;
  state.view = await api("GET", "/api/v3/user-chat/view?chat_code=" + encodeURIComponent(state.current));
  updateHeader();
  updateComposer();
}

async function requestFriend() {
  const target = state.view && state.view.target_info;
  if (!target) return;
  await api("POST", "/api/v3/friend/request", { user_code: target.username });
  show("Friend request sent to " + target.username + ".", "notice");
}

async function toggleMute() {
  const listed = state.conversations.get(state.current);
  if (!listed || !listed.conversationid) return;
  await api("POST", "/conversation/mute", { conversationid: listed.conversationid, mute: !listed.muted });
  listed.muted = !listed.muted;
  updateHeader();
  renderConversations();
}

// ---- live updates -------------------------------------------------------------------------

function setLive(text, ok) {
  $("live").textContent = text;
  $("live").className = "live " + (ok ? "ok" : "down");
}

function stopEvents() {
  clearTimeout(state.reconnectTimer);
  if (state.events) state.events.close();
  state.events = null;
}

function startEvents(lastEventId) {
  stopEvents();
  // The session cookie goes with it (same origin); a resume names the last event seen, so
  // nothing is missed, and messages are keyed, so nothing is shown twice.
  let url = "/api/v3/events";
  if (lastEventId) url += "?last_event_id=" + encodeURIComponent(lastEventId);
  const source = new EventSource(url);
  state.events = source;
  source.onopen = () => {
    setLive("live", true);
    if ($("status").dataset.live) clearStatus();
  };
  source.onerror = () => {
    if (state.events !== source) return;
    setLive("reconnecting…", false);
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a 401 or 503): the browser does not retry by itself.
      showError("Live updates are disconnected; trying again in a few seconds.");
      $("status").dataset.live = "1";
      state.reconnectTimer = setTimeout(reconnect, 5000);
    }
  };
  const handle = (name, handler) => source.addEventListener(name, (event) => {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    Promise.resolve(handler(data)).catch(report);
  });
  handle("message.created", onMessageCreated);
  handle("message.updated", onMessageUpdated);
  handle("message.deleted", onMessageDeleted);
  handle("message.read", onMessageRead);
  handle("chat.updated", onChatUpdated);
  handle("presence.updated", onPresence);
  handle("typing", onTyping);
  handle("stream.ended", () => {
    sessionEnded();
    showError("Your session has ended (signed out elsewhere, or expired). Log in again.");
  });
  handle("stream.reset", () => {
    loadConversations(true).catch(report);
    if (state.current) openConversation(state.current).catch(report);
  });
}

async function reconnect() {
  if (!state.user) return;
  try {
    await api("GET", "/auth/web-session"); // a 401 here ends the session cleanly
  } catch (error) {
    if (error.status === 401) return;
    state.reconnectTimer = setTimeout(reconnect, 5000);
    return;
  }
  startEvents(state.lastEventId);
}

let listReload = null;
function reloadConversationsSoon() {
  if (listReload) return;
  listReload = setTimeout(() => {
    listReload = null;
    loadConversations(true).catch(report);
  }, 150);
}

const typingTimers = new Map();

function onTyping(data) {
  if (data.chat_code !== state.current) return;
  const name = data.nickname || data.username || "They";
  $("typing").textContent = name + " is typing…";
  clearTimeout(typingTimers.get(data.chat_code));
  typingTimers.set(data.chat_code, setTimeout(() => {
    if (state.current === data.chat_code) $("typing").textContent = "";
  }, data.expires_in_ms || 6000));
}

async function onMessageCreated(data) {
  const message = fromEvent(data);
  state.previews.set(message.chatCode, message);
  if (message.chatCode === state.current) {
    if (!isMine(message)) {
      $("typing").textContent = "";
      clearTimeout(typingTimers.get(message.chatCode));
    }
    const follow = nearBottom();
    // Our own message from another device, or the echo of one sent here (its nonce).
    const echo = isMine(message) && Array.from(state.messages.values()).find(
      (m) => m.nonce && m.nonce === message.nonce && m.key !== message.key);
    if (!echo) {
      remember(message);
      renderMessages();
      if (follow) scrollToBottom();
    }
    if (!isMine(message) && !document.hidden) {
      await api("POST", "/message/read", { conversationid: data.conversationid, messagekey: message.key });
    }
  }
  if (!isMine(message) && (document.hidden || message.chatCode !== state.current)) {
    const item = state.conversations.get(message.chatCode);
    notifyMessage(message, item ? targetName(item) : (data.nickname || data.username));
  }
  reloadConversationsSoon();
}

function onMessageUpdated(data) {
  const key = data.messagekey || data.msg_id;
  const message = state.messages.get(key);
  if (data.reaction && typeof data.reaction === "object") {
    if (message) {
      const byMe = String(data.reaction.user_id) === String(state.user.id);
      applyReaction(message, String(data.reaction.emoji), Boolean(data.reaction.added), byMe);
    }
    return;
  }
  if (!message) return;
  if (data.deleted) {
    markDeleted(key);
    return;
  }
  message.content = data.content;
  message.updatedAt = data.updated_at || Date.now();
  renderMessages();
}

function onMessageDeleted(data) {
  markDeleted(data.messagekey || data.msg_id);
  retractNotification(data.chat_code);
  reloadConversationsSoon();
}

function onMessageRead(data) {
  if (data.chat_code !== state.current || !state.user) return;
  if (String(data.reader_id) === String(state.user.id)) return;
  const upTo = state.messages.get(data.messagekey);
  for (const key of state.order) {
    const message = state.messages.get(key);
    if (upTo && message.createdAt > upTo.createdAt) break;
    if (isMine(message)) message.read = true;
  }
  renderMessages();
}

function onChatUpdated(data) {
  const item = state.conversations.get(data.chat_code);
  if (!item || data.hidden) {
    reloadConversationsSoon();
    return;
  }
  item.unread_count = data.chat_code === state.current && !document.hidden ? 0 : data.unread_count;
  if (!data.unread_count) retractNotification(data.chat_code); // read elsewhere
  if (data.latest_msg_time) item.latest_msg_time = data.latest_msg_time;
  renderConversations();
}

function onPresence(data) {
  let changed = false;
  for (const item of state.conversations.values()) {
    if (item.target_info && String(item.target_info.id) === String(data.user_id)) {
      item.target_info.online = Boolean(data.online);
      changed = true;
    }
  }
  if (changed) renderConversations();
}

// ---- wiring -------------------------------------------------------------------------------

function onSubmit(form, action) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearStatus();
    action().catch(report);
  });
}

function wire() {
  onSubmit($("login-form"), () => logIn($("login-username").value.trim(), $("login-password").value));
  $("register-button").addEventListener("click", () => {
    clearStatus();
    register($("login-username").value.trim(), $("login-password").value).catch(report);
  });
  $("logout-button").addEventListener("click", () => logOut().catch(report));
  onSubmit($("start-form"), async () => {
    await startConversation($("start-username").value);
    $("start-username").value = "";
  });
  onSubmit($("send-form"), submitComposer);
  const input = $("message-input");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("send-form").requestSubmit();
    } else if (event.key === "Escape" && state.compose) {
      setCompose(null);
    }
  });
  input.addEventListener("input", () => {
    fitInput();
    if (!state.compose || state.compose.mode !== "edit") {
      saveDraft();
      if (input.value.trim()) sendTyping();
    }
  });
  $("compose-context-cancel").addEventListener("click", () => setCompose(null));
  $("back-button").addEventListener("click", () => {
    if (codeInUrl()) history.back();
    closeConversation();
  });
  $("block-button").addEventListener("click", () => toggleBlock().catch(report));
  $("friend-button").addEventListener("click", () => requestFriend().catch(report));
  $("mute-button").addEventListener("click", () => toggleMute().catch(report));
  $("filter-input").addEventListener("input", renderConversations);
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 40) loadOlder().catch(report);
  });
  document.querySelector(".sidebar").addEventListener("scroll", (event) => {
    const box = event.currentTarget;
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 60) loadConversations(false).catch(report);
  });
  window.addEventListener("hashchange", () => followUrl().catch(report));
  document.addEventListener("visibilitychange", () => {
    if (document.hidden || !state.user || !state.current) return;
    const last = state.order[state.order.length - 1];
    const cid = conversationId();
    if (last && cid && !last.startsWith("pending-")) {
      api("POST", "/message/read", { conversationid: cid, messagekey: last }).catch(report);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const open = document.querySelector(".menu:not([hidden])");
    if (open) {
      open.hidden = true;
      if (open.previousElementSibling) open.previousElementSibling.focus();
    }
  });
  // Attachments: the button, drag and drop, and a pasted image.
  $("attach-button").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    $("file-input").value = "";
    if (file) sendFile(file).catch(report);
  });
  const pane = document.querySelector(".pane");
  pane.addEventListener("dragover", (event) => {
    if (state.uploads && state.current && event.dataTransfer.types.includes("Files")) {
      event.preventDefault();
      pane.classList.add("dropping");
    }
  });
  pane.addEventListener("dragleave", () => pane.classList.remove("dropping"));
  pane.addEventListener("drop", (event) => {
    pane.classList.remove("dropping");
    if (!state.uploads || !state.current) return;
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) sendFile(file).catch(report);
  });
  input.addEventListener("paste", (event) => {
    if (!state.uploads) return;
    const file = Array.from(event.clipboardData.files || []).find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      sendFile(file).catch(report);
    }
  });
  initPeople({ api, report, show, openChatWith: (username) => startConversation(username).catch(report),
    afterChange: () => refreshView().catch(report) });
  initSearch({ api, report, open: (result, key) => openAt(result, key).catch(report) });
}

/** Open a conversation and show one message in it (a search result). */
async function openAt(result, key) {
  const codeOf = () => result.chat_code || (Array.from(state.conversations.values())
    .find((item) => item.conversationid === result.conversationid) || {}).code;
  if (!codeOf()) await loadConversations(true);
  const code = codeOf();
  if (!code) throw new ApiError("That conversation is not in your list any more.", 404);
  if (state.current !== code || codeInUrl() !== code) {
    location.hash = "c=" + code;
    await openConversation(code);
  }
  for (let pages = 0; !findMessage(key) && !state.olderDone && pages < 20; pages += 1) await loadOlder();
  scrollToMessage(key);
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  if (!APP_KEY) {
    showLogin();
    // Visitors cannot fix this; the operator is told in the server's start-up log.
    showError("This chat is not set up for the web yet, so signing in is not possible here. " +
      "Please try again later or tell the people who run it.");
    return;
  }
  // Signed in already? The cookie says so (this script cannot read it; the server can).
  try {
    const session = await api("GET", "/auth/web-session", undefined, { auth: false });
    state.user = session.user;
  } catch (error) {
    showLogin();
    if (error.status && error.status !== 401) report(error);
    return;
  }
  enterChat().catch(report);
});

export { loadPeople };
