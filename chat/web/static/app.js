/*
 * The web chat page: a client of the public API like any other.
 *
 * Classic API for accounts, conversations and messages (X-APP-Key from the page's <meta>,
 * X-APP-Session from login), KOOK user/view to find a user by name, and the event stream
 * (GET /api/v3/events?token=) for everything that happens elsewhere: new messages, read
 * receipts, deletions, presence and unread counts. No framework and no build step.
 */
"use strict";

(function () {
  const APP_KEY = document.querySelector('meta[name="chat-app-key"]').content;
  const STORAGE_KEY = "chat.session";
  const PAGE_SIZE = 30;
  const TYPES = { text: -1, image: -2, location: -5 };

  const $ = (id) => document.getElementById(id);
  const state = {
    session: null, // {session, user}
    conversations: new Map(), // conversationid -> conversation item
    current: null, // open conversationid
    oldestKey: null,
    olderLoading: false,
    olderDone: false,
    events: null,
    reconnectTimer: null,
    listTimer: null,
  };

  // ---- errors: always shown, never swallowed ------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function showError(message) {
    const status = $("status");
    status.textContent = message;
    status.className = "error";
    status.hidden = false;
  }

  function showNotice(message) {
    const status = $("status");
    status.textContent = message;
    status.className = "notice";
    status.hidden = false;
  }

  function clearStatus() {
    $("status").hidden = true;
    $("status").textContent = "";
    delete $("status").dataset.live;
  }

  function report(error) {
    if (error instanceof ApiError) {
      showError(error.message);
    } else {
      showError("Something went wrong in this page: " + error);
      console.error(error);
    }
  }

  // ---- the API --------------------------------------------------------------------------------

  async function api(method, path, body, options) {
    const auth = !options || options.auth !== false;
    const headers = { "X-APP-Key": APP_KEY, Accept: "application/json" };
    if (auth && state.session) {
      headers["X-APP-Session"] = state.session.session;
      headers["Authorization"] = "Bearer " + state.session.session; // the KOOK routes
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError("The server cannot be reached. Check the connection and try again.", 0);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      throw new ApiError("The server answered in a way this page does not understand (HTTP " +
        response.status + "). Try again in a moment.", response.status);
    }
    if (response.ok && answer && answer.code === 0) return answer.data;
    const message = (answer && (answer.msg || answer.message)) || ("HTTP " + response.status);
    if (response.status === 401 && auth && state.session) {
      sessionExpired();
      throw new ApiError("Your session has expired or was ended. Log in again.", 401);
    }
    throw new ApiError(message, response.status);
  }

  function nowString() {
    return String(Date.now());
  }

  function nonce() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---- session ----------------------------------------------------------------------------------

  function saveSession(session) {
    state.session = session;
    localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  }

  function loadSession() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
      if (saved && saved.session && saved.user) return saved;
    } catch (error) {
      /* a damaged entry is the same as none */
    }
    return null;
  }

  function forgetSession() {
    state.session = null;
    localStorage.removeItem(STORAGE_KEY);
    stopEvents();
    clearInterval(state.listTimer);
    state.conversations.clear();
    state.current = null;
  }

  function sessionExpired() {
    forgetSession();
    showLogin();
  }

  async function logIn(username, password) {
    const data = await api("POST", "/auth/login", { username, password }, { auth: false });
    saveSession({ session: data.session, user: data.user });
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
      if (error.status !== 401) failure = error; // already ended is fine
    }
    forgetSession();
    showLogin();
    if (failure) {
      showError("Logged out on this page, but the server could not be told (" + failure.message +
        "); the session ends by itself when it expires.");
    }
  }

  // ---- views ------------------------------------------------------------------------------------

  function showLogin() {
    $("chat-view").hidden = true;
    $("login-view").hidden = false;
    $("login-password").value = "";
    $("login-username").focus();
  }

  async function enterChat() {
    clearStatus();
    $("login-view").hidden = true;
    $("chat-view").hidden = false;
    const user = state.session.user;
    $("me").textContent = "Logged in as " + user.username;
    closeConversation();
    startEvents();
    // A safety net for what no event tells (a partner whose server process died is offline
    // without a notice) and for a first load that failed.
    clearInterval(state.listTimer);
    state.listTimer = setInterval(() => {
      if (!document.hidden) loadConversations().catch(report);
    }, 30000);
    await loadConversations();
  }

  // ---- conversations ----------------------------------------------------------------------------

  function formatTime(ms) {
    if (!ms) return "";
    const date = new Date(ms);
    const today = new Date();
    return date.toDateString() === today.toDateString()
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString();
  }

  async function loadConversations() {
    const items = await api("GET", "/conversation?start=0&limit=100");
    state.conversations.clear();
    for (const item of items) state.conversations.set(item.conversationid, item);
    if (state.current !== null) {
      const open = state.conversations.get(state.current);
      if (open) open.unread_count = 0; // being read right now
    }
    renderConversations();
  }

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren();
    const items = Array.from(state.conversations.values())
      .sort((a, b) => (b.latest_msg_time || 0) - (a.latest_msg_time || 0));
    for (const item of items) list.appendChild(conversationItem(item));
    $("no-conversations").hidden = items.length > 0;
  }

  function conversationItem(item) {
    const target = item.target_info || {};
    const li = document.createElement("li");
    li.dataset.conversation = item.conversationid;
    if (item.conversationid === state.current) li.className = "current";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "conversation";
    if (item.conversationid === state.current) button.setAttribute("aria-current", "true");

    const dot = document.createElement("span");
    dot.className = "dot " + (target.online ? "online" : "offline");
    dot.title = target.online ? "online" : "offline";
    const dotText = document.createElement("span");
    dotText.className = "visually-hidden";
    dotText.textContent = target.online ? "online" : "offline";
    dot.appendChild(dotText);

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = target.nickname && target.nickname !== target.username
      ? target.nickname + " (@" + target.username + ")" : target.username || "unknown";

    const time = document.createElement("time");
    time.className = "latest";
    if (item.latest_msg_time) {
      time.dateTime = new Date(item.latest_msg_time).toISOString();
      time.textContent = formatTime(item.latest_msg_time);
    }

    button.append(dot, name, time);
    if (item.unread_count > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = item.unread_count + " unread";
      button.appendChild(badge);
    }
    button.addEventListener("click", () => openConversation(item.conversationid).catch(report));
    li.appendChild(button);
    return li;
  }

  async function startConversation(username) {
    username = username.trim();
    if (!username) throw new ApiError("Type the username of the person to message.", 400);
    const user = await api("GET", "/api/v3/user/view?username=" + encodeURIComponent(username));
    const data = await api("POST", "/conversation", { passiveuser: Number(user.id), time: nowString() });
    await loadConversations();
    if (!state.conversations.has(data.conversationid)) {
      // New and empty: not listed by the server until a message is sent; show it anyway.
      state.conversations.set(data.conversationid, {
        conversationid: data.conversationid, unread_count: 0, latest_msg_time: 0,
        target_info: { id: Number(user.id), username: user.username, nickname: user.nickname,
          online: user.online },
      });
      renderConversations();
    }
    await openConversation(data.conversationid);
  }

  // ---- messages ---------------------------------------------------------------------------------

  function closeConversation() {
    state.current = null;
    $("message-list").replaceChildren();
    $("conversation-title").textContent = "Pick a conversation";
    $("history-state").textContent = "";
    $("message-input").disabled = true;
    $("send-button").disabled = true;
  }

  async function openConversation(conversationid) {
    state.current = conversationid;
    state.oldestKey = null;
    state.olderDone = false;
    const item = state.conversations.get(conversationid);
    const target = (item && item.target_info) || {};
    $("conversation-title").textContent = "Conversation with " + (target.username || "…");
    $("message-list").replaceChildren();
    $("message-input").disabled = false;
    $("send-button").disabled = false;
    // The newest page: reading it marks the conversation read on the server.
    const page = await api("GET", "/message?conversationid=" + conversationid + "&start=0&limit=" + PAGE_SIZE);
    if (state.current !== conversationid) return; // another one was opened meanwhile
    for (const message of page.slice().reverse()) appendMessage(message);
    noteOldest(page);
    if (item) item.unread_count = 0;
    renderConversations();
    scrollToBottom();
    $("message-input").focus();
  }

  function noteOldest(page) {
    if (page.length) state.oldestKey = page[page.length - 1].messagekey;
    if (page.length < PAGE_SIZE) {
      state.olderDone = true;
      $("history-state").textContent = "This is the beginning of the conversation.";
    } else {
      $("history-state").textContent = "Scroll up for older messages.";
    }
  }

  async function loadOlder() {
    if (state.olderLoading || state.olderDone || state.current === null || !state.oldestKey) return;
    state.olderLoading = true;
    const conversationid = state.current;
    const box = $("messages");
    const before = box.scrollHeight;
    try {
      const page = await api("GET", "/message?conversationid=" + conversationid + "&limit=" + PAGE_SIZE +
        "&before=" + encodeURIComponent(state.oldestKey));
      if (state.current !== conversationid) return;
      const list = $("message-list");
      for (const message of page) {
        if (!findMessage(message.messagekey)) list.insertBefore(messageItem(message), list.firstChild);
      }
      noteOldest(page);
      box.scrollTop += box.scrollHeight - before; // keep what was on screen in place
    } finally {
      state.olderLoading = false;
    }
  }

  function findMessage(key) {
    return $("message-list").querySelector('li[data-key="' + CSS.escape(key) + '"]');
  }

  function isMine(message) {
    return state.session && Number(message.id) === Number(state.session.user.id);
  }

  function appendMessage(message) {
    const existing = findMessage(message.messagekey);
    if (existing) {
      existing.replaceWith(messageItem(message));
      return;
    }
    $("message-list").appendChild(messageItem(message));
  }

  function locationLink(content) {
    const [lat, lng] = content.split(",").map((part) => part.trim());
    const link = document.createElement("a");
    link.href = "https://www.openstreetmap.org/?mlat=" + encodeURIComponent(lat) + "&mlon=" +
      encodeURIComponent(lng) + "#map=15/" + encodeURIComponent(lat) + "/" + encodeURIComponent(lng);
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "Location " + lat + ", " + lng;
    return link;
  }

  function messageBody(message) {
    const body = document.createElement("div");
    body.className = "body";
    if (message.type === TYPES.image && /^https?:\/\//i.test(message.content)) {
      const image = document.createElement("img");
      image.src = message.content;
      image.alt = "Image from " + (message.username || "someone");
      image.loading = "lazy";
      image.referrerPolicy = "no-referrer";
      body.appendChild(image);
    } else if (message.type === TYPES.location && /^-?[\d.]+\s*,\s*-?[\d.]+$/.test(message.content)) {
      body.appendChild(locationLink(message.content));
    } else if ([-3, -4, -6].includes(message.type) && /^https?:\/\//i.test(message.content)) {
      const link = document.createElement("a");
      link.href = message.content;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = message.content;
      body.appendChild(link);
    } else {
      body.textContent = message.content;
    }
    return body;
  }

  function messageItem(message) {
    const mine = isMine(message);
    const li = document.createElement("li");
    li.dataset.key = message.messagekey;
    li.className = mine ? "mine" : "theirs";

    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = mine ? "You" : (message.nickname || message.username || "");
    const time = document.createElement("time");
    const at = message.created_at || Number(message.time) || 0;
    if (at) {
      time.dateTime = new Date(at).toISOString();
      time.textContent = formatTime(at);
    }
    meta.append(author, time);
    if (mine) {
      const receipt = document.createElement("span");
      receipt.className = "receipt";
      receipt.textContent = message.isread ? "read" : (message.ispushed ? "delivered" : "sent");
      meta.appendChild(receipt);
    }

    const actions = document.createElement("div");
    actions.className = "message-actions";
    const hide = document.createElement("button");
    hide.type = "button";
    hide.textContent = "Delete for me";
    hide.addEventListener("click", () => deleteMessage(message.messagekey, 1).catch(report));
    actions.appendChild(hide);
    if (mine) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Delete for everyone";
      remove.addEventListener("click", () => deleteMessage(message.messagekey, 2).catch(report));
      actions.appendChild(remove);
    }
    li.append(meta, messageBody(message), actions);
    return li;
  }

  function setReceipt(li, text) {
    const receipt = li.querySelector(".receipt");
    if (receipt && receipt.textContent !== "read") receipt.textContent = text;
  }

  function scrollToBottom() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  function nearBottom() {
    const box = $("messages");
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  async function sendMessage() {
    if (state.current === null) throw new ApiError("Open a conversation first.", 400);
    const input = $("message-input");
    const type = Number($("message-type").value);
    const content = input.value.trim();
    if (!content) throw new ApiError("Type a message first.", 400);
    const conversationid = state.current;
    const sent = await api("POST", "/message", {
      conversationid, type, content, time: nowString(), nonce: nonce(),
    });
    input.value = "";
    if (state.current === conversationid) {
      const user = state.session.user;
      appendMessage({
        messagekey: sent.messagekey, conversationid, type, content, time: sent.time,
        created_at: sent.created_at, id: user.id, username: user.username,
        nickname: user.nickname, ispushed: sent.ispushed, isread: sent.isread,
      });
      scrollToBottom();
    }
    const item = state.conversations.get(conversationid);
    if (item) {
      item.latest_msg_time = sent.created_at || Date.now();
      renderConversations();
    }
  }

  async function deleteMessage(key, type) {
    await api("DELETE", "/message", { messagekey: key, type });
    const li = findMessage(key);
    if (li) li.remove();
  }

  async function markRead(conversationid, key) {
    await api("POST", "/message/read", { conversationid, messagekey: key });
  }

  // ---- live updates -----------------------------------------------------------------------------

  function setLive(text, ok) {
    const live = $("live");
    live.textContent = text;
    live.className = "live " + (ok ? "ok" : "down");
  }

  function stopEvents() {
    clearTimeout(state.reconnectTimer);
    if (state.events) state.events.close();
    state.events = null;
  }

  function startEvents(lastEventId) {
    stopEvents();
    let url = "/api/v3/events?token=" + encodeURIComponent(state.session.session);
    if (lastEventId) url += "&last_event_id=" + encodeURIComponent(lastEventId);
    const source = new EventSource(url);
    state.events = source;
    let lastId = lastEventId || "";
    source.onopen = () => {
      setLive("live", true);
      if ($("status").className === "error" && $("status").dataset.live) clearStatus();
    };
    source.onerror = () => {
      if (state.events !== source) return;
      setLive("reconnecting…", false);
      if (source.readyState === EventSource.CLOSED) {
        // Refused outright (a 401 or 503): the browser will not retry by itself.
        showError("Live updates are disconnected; trying again in a few seconds.");
        $("status").dataset.live = "1";
        state.reconnectTimer = setTimeout(() => reconnect(lastId), 5000);
      }
    };
    const handle = (name, handler) => source.addEventListener(name, (event) => {
      lastId = event.lastEventId || lastId;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (error) {
        return; // not ours to understand
      }
      Promise.resolve(handler(data)).catch(report);
    });
    handle("message.created", onMessageCreated);
    handle("message.updated", onMessageUpdated);
    handle("message.deleted", onMessageDeleted);
    handle("message.read", onMessageRead);
    handle("chat.updated", onChatUpdated);
    handle("presence.updated", onPresence);
    handle("stream.reset", () => {
      loadConversations().catch(report);
      if (state.current !== null) openConversation(state.current).catch(report);
    });
  }

  async function reconnect(lastId) {
    if (!state.session) return;
    try {
      await api("GET", "/conversation?start=0&limit=1"); // a 401 here ends the session cleanly
    } catch (error) {
      if (error.status === 401) return;
      state.reconnectTimer = setTimeout(() => reconnect(lastId), 5000);
      return;
    }
    startEvents(lastId);
  }

  let listReload = null;
  function reloadConversationsSoon() {
    // Several events in a burst need one reload of the list, not one each.
    if (listReload) return;
    listReload = setTimeout(() => {
      listReload = null;
      loadConversations().catch(report);
    }, 150);
  }

  async function onMessageCreated(message) {
    if (message.conversationid === state.current) {
      const follow = nearBottom();
      appendMessage(message);
      if (follow) scrollToBottom();
      // Read only if someone can see it; a hidden tab reads when it is shown again.
      if (!isMine(message) && !document.hidden) await markRead(message.conversationid, message.messagekey);
    }
    reloadConversationsSoon();
  }

  function onMessageUpdated(message) {
    const li = findMessage(message.messagekey);
    if (!li) return;
    if (message.deleted) li.remove();
    else li.replaceWith(messageItem(message));
  }

  function onMessageDeleted(data) {
    const li = findMessage(data.messagekey || data.msg_id);
    if (li) li.remove();
    reloadConversationsSoon();
  }

  async function onMessageRead(data) {
    if (data.conversationid !== state.current || !state.session) return;
    if (Number(data.reader_id) === Number(state.session.user.id)) return;
    const upTo = data.messagekey && findMessage(data.messagekey);
    const items = Array.from($("message-list").children);
    if (upTo) {
      for (const li of items) {
        setReceipt(li, "read");
        if (li === upTo) break;
      }
      return;
    }
    // The read message is not on screen: ask the server for the state of what is.
    const page = await api("GET", "/message?conversationid=" + state.current + "&start=0&limit=" + PAGE_SIZE);
    for (const message of page) {
      const li = findMessage(message.messagekey);
      if (li && message.isread) setReceipt(li, "read");
    }
  }

  function onChatUpdated(data) {
    const item = state.conversations.get(data.conversationid);
    if (!item || data.hidden) {
      reloadConversationsSoon();
      return;
    }
    item.unread_count = data.conversationid === state.current ? 0 : data.unread_count;
    if (data.latest_msg_time) item.latest_msg_time = data.latest_msg_time;
    renderConversations();
  }

  function onPresence(data) {
    let changed = false;
    for (const item of state.conversations.values()) {
      if (item.target_info && Number(item.target_info.id) === Number(data.user_id)) {
        item.target_info.online = Boolean(data.online);
        changed = true;
      }
    }
    if (changed) renderConversations();
  }

  // ---- wiring -----------------------------------------------------------------------------------

  function onSubmit(form, action) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearStatus();
      action().catch(report);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
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
    onSubmit($("send-form"), sendMessage);
    $("messages").addEventListener("scroll", () => {
      if ($("messages").scrollTop < 40) loadOlder().catch(report);
    });
    document.addEventListener("visibilitychange", () => {
      const last = $("message-list").lastElementChild;
      if (!document.hidden && state.session && state.current !== null && last) {
        markRead(state.current, last.dataset.key).catch(report);
      }
    });

    if (!APP_KEY) {
      showLogin();
      // Visitors cannot fix this; the operator is told in the server's start-up log.
      showError("This chat is not set up for the web yet, so signing in is not possible here. " +
        "Please try again later or tell the people who run it.");
      return;
    }
    const saved = loadSession();
    if (!saved) {
      showLogin();
      return;
    }
    state.session = saved;
    // An expired session says so (and shows the login form); an unreachable server says so
    // and keeps the session, since it may only be away for a moment.
    enterChat().catch(report);
  });
})();
