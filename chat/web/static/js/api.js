/*
 * The page's one door to the service: the public API, as any client would call it.
 *
 * The session is an HttpOnly cookie this script never sees (POST /auth/web-session sets it);
 * every call says it comes from the page itself with X-Chat-Web: 1, without which the API
 * ignores the cookie, so a form or link on another site cannot act as the person. Classic
 * routes also get the page's app key from its <meta>.
 */

export const APP_KEY = document.querySelector('meta[name="chat-app-key"]').content;
const WEB_HEADERS = { "X-APP-Key": APP_KEY, "X-Chat-Web": "1", Accept: "application/json" };

export class ApiError extends Error {
  constructor(message, status, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter || null;
  }
}

let onSessionEnded = () => {};

/** What to do when the server says the session is over (a 401 on a signed-in call). */
export function whenSessionEnds(handler) {
  onSessionEnded = handler;
}

function messageOf(answer, status) {
  return (answer && (answer.msg || answer.message)) || ("HTTP " + status);
}

/** Call the API; resolves to the envelope's data, rejects with an ApiError a person can read. */
export async function api(method, path, body, options) {
  const signedIn = !options || options.auth !== false;
  const headers = Object.assign({}, WEB_HEADERS);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
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
  if (response.status === 401 && signedIn) {
    onSessionEnded();
    throw new ApiError("Your session has expired or was ended. Log in again.", 401);
  }
  throw new ApiError(messageOf(answer, response.status), response.status, response.headers.get("Retry-After"));
}

/**
 * Upload a file to POST /asset with progress (fetch cannot report upload progress, so
 * XMLHttpRequest). Resolves to the asset {url, type, name, size, mime, ...}.
 */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/asset");
    for (const [name, value] of Object.entries(WEB_HEADERS)) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("error", () => reject(new ApiError(
      "The upload did not reach the server. Check the connection and try again.", 0)));
    request.addEventListener("load", () => {
      let answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch (error) {
        /* judged by the status below */
      }
      if (request.status === 200 && answer && answer.code === 0) {
        resolve(answer.data);
        return;
      }
      if (request.status === 401) onSessionEnded();
      let text = messageOf(answer, request.status);
      if (request.status === 413) text = "This file is too large: " + text;
      if (request.status === 429) {
        const wait = request.getResponseHeader("Retry-After");
        text = "Upload limit reached: " + text + (wait ? " (try again in " + wait + " s)" : "");
      }
      if (request.status === 404) text = "This server does not take uploads.";
      reject(new ApiError(text, request.status));
    });
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image.png");
    request.send(form);
  });
}

/** Whether a route exists here: a GET that answers 404 says it does not (405: it does, for another method). */
export async function routeExists(path) {
  try {
    const response = await fetch(path, { headers: WEB_HEADERS, credentials: "same-origin" });
    return response.status !== 404;
  } catch (error) {
    return false;
  }
}

export function nonce() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
