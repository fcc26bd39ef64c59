/*
 * People: friend requests (send, accept, decline), friends, and blocks, from KOOK's
 * /api/v3/friend routes.
 */

import { $, el, avatar } from "./dom.js";

let deps = null;

function nameOf(user) {
  return user.nickname && user.nickname !== user.username ? user.nickname + " (@" + user.username + ")" : user.username;
}

function row(user, ...buttons) {
  return el("li", { class: "person" }, avatar(user), el("span", { class: "name", text: nameOf(user) }),
    el("span", { class: "person-actions" }, ...buttons));
}

function button(text, handler, secondary) {
  return el("button", { type: "button", class: secondary ? "secondary" : "", text,
    onclick: () => handler().catch(deps.report) });
}

export async function loadPeople() {
  const lists = await deps.api("GET", "/api/v3/friend");
  const call = (path, body) => async () => {
    await deps.api("POST", path, body);
    await loadPeople();
    deps.afterChange();
  };
  $("requests").replaceChildren(...lists.request.map((entry) => entry.own
    ? row(entry.friend_info, el("span", { class: "hint", text: "request sent" }))
    : row(entry.friend_info,
      button("Accept", call("/api/v3/friend/handle-request", { id: entry.id, accept: 1 })),
      button("Decline", call("/api/v3/friend/handle-request", { id: entry.id, accept: 0 }), true))));
  $("friends").replaceChildren(...lists.friend.map((entry) => row(entry.friend_info,
    button("Message", async () => { deps.openChatWith(entry.friend_info.username); closePeople(); }),
    button("Remove friend", call("/api/v3/friend/delete", { user_id: entry.friend_info.id }), true))));
  $("blocked").replaceChildren(...lists.blocked.map((entry) => row(entry.friend_info,
    button("Unblock", call("/api/v3/friend/unblock", { user_id: entry.friend_info.id }), true))));
  for (const [id, empty] of [["requests", "No friend requests."], ["friends", "No friends yet."],
    ["blocked", "Nobody is blocked."]]) {
    if (!$(id).children.length) $(id).append(el("li", { class: "hint", text: empty }));
  }
}

function closePeople() {
  $("people-view").hidden = true;
  $("chat-view").classList.remove("people-open");
  $("people-button").focus();
}

export function initPeople(dependencies) {
  deps = dependencies;
  $("people-button").addEventListener("click", () => {
    $("people-view").hidden = false;
    $("chat-view").classList.add("people-open");
    $("people-title").tabIndex = -1;
    $("people-title").focus();
    loadPeople().catch(deps.report);
  });
  $("people-close").addEventListener("click", closePeople);
  $("friend-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const username = $("friend-username").value.trim();
    if (!username) {
      deps.report(new Error("Type a username first."));
      return;
    }
    deps.api("POST", "/api/v3/friend/request", { user_code: username }).then(async () => {
      $("friend-username").value = "";
      deps.show("Friend request sent to " + username + ".", "notice");
      await loadPeople();
    }).catch(deps.report);
  });
}
