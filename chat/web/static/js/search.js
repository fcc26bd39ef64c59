/*
 * Message search (GET /message/search): results with their snippet, the matched parts
 * marked from the answer's code-point offsets, all through textContent; a result opens its
 * conversation at that message. Without the route (a 404) the search box stays hidden.
 */

import { $, el, formatTime } from "./dom.js";
import { routeExists } from "./api.js";

let deps = null;
let query = "";
let next = null;

/** The snippet with [start, end) code-point ranges in <mark>, never parsed as HTML. */
export function highlighted(snippet, highlights) {
  const points = Array.from(snippet || "");
  const box = el("span", { class: "snippet" });
  let at = 0;
  const ranges = (highlights || []).filter((r) => Array.isArray(r) && r.length === 2)
    .map(([s, e]) => [Math.max(0, Number(s) || 0), Math.min(points.length, Number(e) || 0)])
    .filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  for (const [start, end] of ranges) {
    if (start < at) continue;
    if (start > at) box.append(document.createTextNode(points.slice(at, start).join("")));
    box.append(el("mark", { text: points.slice(start, end).join("") }));
    at = end;
  }
  if (at < points.length) box.append(document.createTextNode(points.slice(at).join("")));
  return box;
}

async function run(more) {
  const params = new URLSearchParams({ q: query, limit: "20" });
  if (more && next) params.set("before", next);
  $("search-state").textContent = "Searching…";
  const data = await deps.api("GET", "/message/search?" + params.toString());
  next = data.next || null;
  const items = data.items.map((item) => el("li", {},
    el("button", { type: "button", class: "result", onclick: () => deps.open(item, item.messagekey) },
      el("span", { class: "result-head", text: (item.nickname || item.username || "") + " · " + formatTime(item.created_at || Number(item.time)) }),
      highlighted(item.snippet, item.highlights))));
  if (more) $("search-results").append(...items);
  else $("search-results").replaceChildren(...items);
  $("search-more").hidden = !next;
  const count = $("search-results").children.length;
  $("search-state").textContent = count ? count + " result" + (count === 1 ? "" : "s") : "Nothing found.";
}

export function initSearch(dependencies) {
  deps = dependencies;
  $("search-form").hidden = true;
  routeExists("/message/search").then((exists) => { $("search-form").hidden = !exists; });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    query = $("search-input").value.trim();
    if (!query) return;
    $("search-results-box").hidden = false;
    run(false).catch((error) => {
      $("search-state").textContent = error.message;
    });
  });
  $("search-more").addEventListener("click", () => run(true).catch(deps.report));
  $("search-close").addEventListener("click", () => {
    $("search-results-box").hidden = true;
    $("search-results").replaceChildren();
    $("search-input").value = "";
    $("search-input").focus();
  });
}
