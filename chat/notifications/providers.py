"""The push providers on the wire: Web Push (RFC 8030/8291/8292), FCM HTTP v1, APNs over HTTP/2.

Each ``send_*`` takes a device row and the notification (a dict, the Web Push payload's
fields) and answers an ``Outcome``, never an exception: ``sent``; ``gone`` (the provider says
the device no longer exists: the caller removes it); ``permanent`` (a failure a retry cannot
fix); otherwise a transient failure, retried after ``retry_after`` at least. Every call ends
within ``PUSH_ATTEMPT_TIMEOUT``. Each provider's base URL is a setting, so the tests point
them at local servers that speak the same protocols.

Only Web Push is always on (its VAPID key is made when none is configured); FCM needs a
service account's JSON key, APNs a .p8 key with its key id and team id.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import NamedTuple
from urllib.parse import urlsplit

import jwt
import requests
from flask import current_app

from chat.notifications import keys
from chat.webhooks.addresses import Unresolvable, UnsafeAddress, resolve
from chat.webhooks.transport import post_raw, retry_after_seconds

USER_AGENT = "chat-push/1.0"


class Outcome(NamedTuple):
    sent: bool
    status_code: int | None = None
    error: str | None = None
    gone: bool = False
    permanent: bool = False
    retry_after: float = 0.0


def _by_status(status: int, headers, what: str, *, gone_statuses=(404, 410)) -> Outcome:
    """The common reading of an HTTP answer: 2xx sent; gone; 429/5xx transient; other 4xx
    permanent (retrying the same request cannot succeed)."""
    if 200 <= status < 300:
        return Outcome(True, status)
    if status in gone_statuses:
        return Outcome(False, status, f"{what} answered {status}: the device is gone", gone=True)
    if status == 429 or status >= 500:
        return Outcome(False, status, f"{what} answered {status}", retry_after=retry_after_seconds(headers))
    return Outcome(False, status, f"{what} answered {status}", permanent=True)


def _timeout() -> float:
    return float(current_app.config["PUSH_ATTEMPT_TIMEOUT"])


def _verify():
    return current_app.config.get("PUSH_CA_BUNDLE") or True


# ---- Web Push ------------------------------------------------------------------------------


def check_endpoint(url: str) -> None:
    """Raise ``UnsafeAddress``/``Unresolvable`` unless a Web Push endpoint may be called:
    https to public addresses, or (``PUSH_ALLOW_PRIVATE``) http and private ones too."""
    parts = urlsplit(url)
    allow_private = current_app.config["PUSH_ALLOW_PRIVATE"]
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise UnsafeAddress("push endpoints must be https URLs")
    resolve(
        parts.hostname or "",
        parts.port or (443 if parts.scheme == "https" else 80),
        allow_private=allow_private,
    )


def send_webpush(device, subscription_keys: dict, notification: dict, topic: str) -> Outcome:
    """POST the encrypted notification (aes128gcm) with a VAPID signature (RFC 8292); the
    ``Topic`` header makes it replace the previous notification of the same chat.

    The endpoint is a URL a user gave: it goes through the webhooks' transport (the address
    checked and pinned, no redirects, a hard deadline, at most a few KB of the answer read)."""
    try:
        check_endpoint(device.address)
    except (UnsafeAddress, Unresolvable) as exc:
        return Outcome(False, None, f"endpoint refused: {exc}", permanent=True)
    parts = urlsplit(device.address)
    claims = {
        "sub": current_app.config["VAPID_SUBJECT"],
        "aud": f"{parts.scheme}://{parts.netloc}",
        "exp": int(time.time()) + 12 * 3600,
    }
    subscription = {"endpoint": device.address, "keys": subscription_keys}
    body = json.dumps(notification, separators=(",", ":"), ensure_ascii=False).encode()
    # Imported by the worker that sends, not by every process that loads the app: pywebpush
    # (with aiohttp) cost each web and Celery process about 0.25 s of CPU at start-up.
    from pywebpush import WebPusher, WebPushException  # noqa: PLC0415

    try:
        encrypted = WebPusher(subscription).encode(body, "aes128gcm")["body"]
    except (WebPushException, ValueError) as exc:
        return Outcome(False, None, f"cannot encrypt for this subscription: {exc}"[:200], permanent=True)
    headers = {
        **keys.vapid().sign(claims),
        "Topic": topic,
        "Urgency": "high",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(int(current_app.config["WEBPUSH_TTL_SECONDS"])),
    }
    answer, problem = post_raw(
        device.address, encrypted, headers, _timeout(), allow_private=current_app.config["PUSH_ALLOW_PRIVATE"]
    )
    if answer is None:
        return Outcome(False, None, f"the push service: {problem}")
    return _by_status(
        answer.status_code,
        {"Retry-After": str(int(answer.retry_after))} if answer.retry_after else {},
        "the push service",
    )


# ---- FCM HTTP v1 ---------------------------------------------------------------------------

_fcm_lock = threading.Lock()
_fcm_cache: dict[tuple[str, str], tuple[str, float]] = {}


def fcm_enabled(config) -> bool:
    return bool(config.get("FCM_CREDENTIALS_FILE"))


def _fcm_account() -> dict:
    with open(current_app.config["FCM_CREDENTIALS_FILE"], encoding="utf-8") as handle:
        return json.load(handle)


def _fcm_access_token(account: dict) -> str:
    """An OAuth 2 access token for the service account (RFC 7523 JWT bearer grant at the
    account's ``token_uri``), reused until a minute before it expires."""
    with _fcm_lock:
        cached = _fcm_cache.get((account["client_email"], account["token_uri"]))
        if cached and cached[1] > time.time() + 60:
            return cached[0]
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": account["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": account["token_uri"],
            "iat": now,
            "exp": now + 3600,
        },
        account["private_key"],
        algorithm="RS256",
        headers={"kid": account.get("private_key_id")},
    )
    response = requests.post(
        account["token_uri"],
        timeout=_timeout(),
        verify=_verify(),
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    response.raise_for_status()
    answer = response.json()
    token = answer["access_token"]
    with _fcm_lock:
        _fcm_cache[(account["client_email"], account["token_uri"])] = (
            token,
            time.time() + float(answer.get("expires_in", 3600)),
        )
    return token


def send_fcm(device, notification: dict, collapse_key: str) -> Outcome:
    """``messages:send`` with a notification, the payload as data, and the chat as the
    collapse key (Android's ``tag``, ``collapse_key``; APNs' collapse id through FCM)."""
    try:
        account = _fcm_account()
        token = _fcm_access_token(account)
    except (OSError, ValueError, KeyError, requests.RequestException) as exc:
        return Outcome(False, None, f"no FCM access token: {type(exc).__name__}")
    data = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in notification.items()
    }
    message = {
        "message": {
            "token": device.address,
            "notification": {"title": notification["title"], "body": notification["body"]},
            "data": data,
            "android": {
                "collapse_key": collapse_key,
                "priority": "high",
                "notification": {"tag": collapse_key, "notification_count": notification["badge"]},
            },
            "apns": {
                "headers": {"apns-collapse-id": collapse_key},
                "payload": {"aps": {"badge": notification["badge"]}},
            },
            "webpush": {"headers": {"Topic": collapse_key}},
        }
    }
    url = (
        f"{current_app.config['FCM_BASE_URL'].rstrip('/')}/v1/projects/{account['project_id']}/messages:send"
    )
    try:
        response = requests.post(
            url,
            json=message,
            timeout=_timeout(),
            verify=_verify(),
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
        )
    except requests.RequestException as exc:
        return Outcome(False, None, f"FCM unreachable: {type(exc).__name__}")
    if response.status_code in (400, 404):
        # FCM says UNREGISTERED (404) for a token that is gone, INVALID_ARGUMENT (400) for one
        # that never was a token; either way the device cannot be reached.
        code = _fcm_error_code(response)
        if code in ("UNREGISTERED", "INVALID_ARGUMENT") or response.status_code == 404:
            return Outcome(
                False,
                response.status_code,
                f"FCM answered {code or response.status_code}: the token is gone",
                gone=True,
            )
    return _by_status(response.status_code, response.headers, "FCM", gone_statuses=())


def _fcm_error_code(response) -> str | None:
    try:
        details = response.json()["error"].get("details", [])
        for detail in details:
            if detail.get("errorCode"):
                return detail["errorCode"]
        return response.json()["error"].get("status")
    except (ValueError, KeyError, AttributeError, TypeError):
        return None


# ---- APNs ----------------------------------------------------------------------------------

_apns_lock = threading.Lock()
_apns_token: dict[tuple, tuple[str, float]] = {}


def apns_enabled(config) -> bool:
    return all(config.get(name) for name in ("APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID"))


def _apns_jwt() -> str:
    """The provider token (ES256 over the .p8 key), renewed every 50 minutes: APNs refuses
    one older than an hour, and one renewed more often than every 20 minutes."""
    config = current_app.config
    with _apns_lock:
        which = (config["APNS_KEY_FILE"], config["APNS_KEY_ID"], config["APNS_TEAM_ID"])
        cached = _apns_token.get(which)
        if cached and cached[1] > time.time():
            return cached[0]
        with open(config["APNS_KEY_FILE"], encoding="utf-8") as handle:
            key = handle.read()
        token = jwt.encode(
            {"iss": config["APNS_TEAM_ID"], "iat": int(time.time())},
            key,
            algorithm="ES256",
            headers={"kid": config["APNS_KEY_ID"]},
        )
        _apns_token[which] = (token, time.time() + 50 * 60)
        return token


def send_apns(device, notification: dict, collapse_id: str) -> Outcome:
    """POST /3/device/<token> over HTTP/2 with the provider token; ``apns-collapse-id``
    replaces the chat's previous notification."""
    try:
        token = _apns_jwt()
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        return Outcome(False, None, f"cannot sign the APNs token: {type(exc).__name__}", permanent=True)
    body = {
        "aps": {
            "alert": {"title": notification["title"], "body": notification["body"]},
            "badge": notification["badge"],
            "sound": "default",
            "thread-id": collapse_id,
        },
        "chat": {key: notification[key] for key in ("conversationid", "chat_code", "count")},
    }
    headers = {
        "authorization": f"bearer {token}",
        "apns-topic": device.topic or "",
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-collapse-id": collapse_id,
        "apns-expiration": str(int(time.time()) + int(current_app.config["WEBPUSH_TTL_SECONDS"])),
    }
    url = f"{current_app.config['APNS_BASE_URL'].rstrip('/')}/3/device/{device.address}"
    import httpx  # noqa: PLC0415 (as pywebpush in ``send_webpush``: only a sending worker needs it)

    try:
        bundle = current_app.config.get("PUSH_CA_BUNDLE")
        verify = ssl.create_default_context(cafile=bundle) if bundle else True
        with httpx.Client(http2=True, verify=verify, timeout=_timeout()) as client:
            response = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"APNs unreachable: {type(exc).__name__}")
    if response.status_code == 400:
        reason = _apns_reason(response)
        if reason in ("BadDeviceToken", "DeviceTokenNotForTopic"):
            return Outcome(False, 400, f"APNs answered {reason}: the token is gone", gone=True)
        return Outcome(False, 400, f"APNs answered 400 {reason or ''}".strip(), permanent=True)
    return _by_status(response.status_code, response.headers, "APNs", gone_statuses=(410,))


def _apns_reason(response) -> str | None:
    try:
        return response.json().get("reason")
    except (ValueError, AttributeError):
        return None
