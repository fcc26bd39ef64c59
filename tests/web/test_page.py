"""The page at ``/`` and the docs viewer at ``/docs``, through the test client: what is
served, the app key the page is given (``WEB_APP_KEY`` or the file ``flask demo`` writes), and
the handles a screen reader and the browser test find. The page's behaviour in a real browser
is tests/integration/test_web_browser.py."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from chat.services import accounts, credentials


def page_key(response) -> str:
    return re.search(r'<meta name="chat-app-key" content="([^"]*)">', response.get_data(as_text=True)).group(
        1
    )


@pytest.fixture
def key_file(app, tmp_path):
    app.config["WEB_APP_KEY_FILE"] = str(tmp_path / "instance" / "web-app-key")
    return tmp_path / "instance" / "web-app-key"


def test_the_page_is_served_with_the_configured_app_key(app, client, app_key):
    app.config["WEB_APP_KEY"] = app_key
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert page_key(response) == app_key
    policy = response.headers["Content-Security-Policy"]
    # Nothing from elsewhere may run or be fetched by script; only pictures may come from URLs.
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'self'" in policy
    # The key it was given works for the classic API.
    login = client.post(
        "/auth/register",
        json={"username": "pageuser", "password": "page-password"},
        headers={"X-APP-Key": page_key(response)},
    )
    assert login.status_code == 200, login.json


def test_without_a_key_the_page_still_loads_and_has_none(client, app):
    assert app.config["WEB_APP_KEY"] is None and app.config["WEB_APP_KEY_FILE"] is None
    response = client.get("/")
    assert response.status_code == 200 and page_key(response) == ""


def test_the_page_names_its_controls_as_people_and_tests_find_them(client):
    html = client.get("/").get_data(as_text=True)
    labels = dict(
        (target, text) for target, text in re.findall(r'<label for="([^"]+)"[^>]*>([^<]+)</label>', html)
    )
    assert {"Username", "Password", "Message", "Username to message"} <= set(labels.values())
    for target in labels:
        assert f'id="{target}"' in html, target  # every label points at a real control
    buttons = set(re.findall(r"<button[^>]*>([^<]+)</button>", html))
    assert {"Log in", "Register", "Send", "Start conversation", "Log out"} <= buttons
    assert re.search(r'<ul[^>]*role="list"[^>]*aria-label="Conversations"', html)
    assert re.search(r'role="log"[^>]*aria-label="Messages"', html)


@pytest.mark.parametrize(
    "path, mimetype",
    [
        ("/web/static/js/app.js", "text/javascript"),
        ("/sw.js", "text/javascript"),
        ("/web/static/app.css", "text/css"),
    ],
)
def test_the_page_files_come_from_the_package(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == mimetype


def test_page_loads_are_not_rate_limited(app, config_class):
    from chat import create_app

    limited = create_app(
        type("Limited", (config_class,), {"RATELIMIT_ENABLED": True, "RATELIMIT_GLOBAL": "2 per minute"})
    )
    client = limited.test_client()
    assert [client.get("/").status_code for _ in range(4)] == [200] * 4
    assert client.get("/web/static/js/app.js").status_code == 200


def test_demo_gives_the_page_a_key_once_and_says_what_to_open(app, client, key_file):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"], env={"PORT": "5123"})
    assert first.exit_code == 0, first.output
    for url in ("http://127.0.0.1:5123/ ", "http://127.0.0.1:5123/docs", "http://127.0.0.1:5123/metrics"):
        assert url in first.output
    key = key_file.read_text().strip()
    assert credentials.app_key_is_valid(key)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600  # a secret: this account only
    assert page_key(client.get("/")) == key
    # Again (make run on the next day): the same key, no new one.
    again = runner.invoke(args=["demo"])
    assert again.exit_code == 0 and "already has users" in again.output
    assert key_file.read_text().strip() == key


def test_demo_replaces_a_revoked_or_missing_page_key(app, client, key_file):
    runner = app.test_cli_runner()
    runner.invoke(args=["demo"])
    old = key_file.read_text().strip()
    accounts.revoke_app_key("web")
    assert runner.invoke(args=["demo"]).exit_code == 0
    new = key_file.read_text().strip()
    assert new != old and credentials.app_key_is_valid(new) and page_key(client.get("/")) == new
    key_file.unlink()
    assert runner.invoke(args=["demo"]).exit_code == 0
    assert credentials.app_key_is_valid(key_file.read_text().strip())


def test_web_app_key_wins_over_the_file(app, client, key_file, app_key):
    app.test_cli_runner().invoke(args=["demo"])
    app.config["WEB_APP_KEY"] = app_key
    assert page_key(client.get("/")) == app_key


def test_the_docs_page_shows_the_openapi_document_from_packaged_files(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-spec-url="/openapi.json"' in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/docs/assets/swagger-ui-bundle.js", "/web/static/docs.js"]
    for src in scripts + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html):
        asset = client.get(src)
        assert asset.status_code == 200 and len(asset.data) > 100, src
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").data
    # Both credentials can be entered in its Authorize dialog: the document declares them.
    schemes = client.get("/openapi.json").json["components"]["securitySchemes"]
    assert {"AppKey", "AppSession", "Token"} <= set(schemes)


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/../__init__.py",
        "/docs/assets/%2e%2e/__init__.py",
        "/docs/assets/nothing.js",
        "/web/static/../__init__.py",
        # Swagger UI's stock pages: no CSP, and they fetch petstore.swagger.io
        "/docs/assets/index.html",
        "/docs/assets/oauth2-redirect.html",
        "/docs/assets/swagger-initializer.js",
        "/docs/assets/swagger-ui.js",
    ],
)
def test_nothing_outside_the_bundled_files_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json["code"] == 1  # the classic envelope, like every unknown route


# Ways a script turns a string into markup or code. The page builds every element with
# createElement and puts user content in with textContent (text, KMarkdown and card content,
# edits, nicknames and usernames) or, for media, as an http(s) URL checked first in src/href.
HTML_SINKS = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    'setAttribute("on',
    "setAttribute('on",
    "srcdoc",
    "javascript:",
)


@pytest.mark.parametrize(
    "script",
    [
        "js/app.js",
        "js/dom.js",
        "js/message-view.js",
        "js/people.js",
        "js/search.js",
        "js/notify.js",
        "js/api.js",
        "sw.js",
        "docs.js",
    ],
)
def test_the_pages_scripts_never_turn_content_into_markup(script):
    from chat.web import web_blp

    static = Path(web_blp.static_folder)
    assert {str(p.relative_to(static)) for p in static.rglob("*.js")} <= {
        "js/app.js",
        "js/dom.js",
        "js/message-view.js",
        "js/people.js",
        "js/search.js",
        "js/notify.js",
        "js/api.js",
        "sw.js",
        "docs.js",
    }  # a new script is added to the list above
    source = (static / script).read_text()
    assert [sink for sink in HTML_SINKS if sink in source] == []
    # Media URLs reach src/href only after an http(s) check: as many checks as assignments.
    assignments = len(re.findall(r"\.(?:src|href) = message\.content", source))
    assert source.count("/^https?:\\/\\//i.test(message.content)") >= assignments


def test_production_never_hands_the_page_the_development_key_file(tmp_path, monkeypatch):
    from config import load_config

    settings = load_config(
        {
            "CHAT_ENV": "production",
            "SECRET_KEY": "s",
            "DATABASE_URL": "postgresql://h/db",
            "REDIS_URL": "redis://h",
            "WEB_APP_KEY_FILE": str(tmp_path / "web-app-key"),
        }
    )
    assert settings["WEB_APP_KEY"] is None and settings["WEB_APP_KEY_FILE"] is None


def test_without_a_key_the_page_says_so_in_plain_words_and_the_log_tells_the_operator(app, caplog):
    from chat.web import warn_if_unconfigured

    script = app.test_client().get("/web/static/js/app.js").get_data(as_text=True)
    assert "This chat is not set up for the web yet" in script
    app.testing = False
    try:
        with caplog.at_level("WARNING", logger="chat.web"):
            warn_if_unconfigured(app)
    finally:
        app.testing = True
    assert "WEB_APP_KEY is not set" in caplog.text


def test_the_pages_have_a_favicon_so_no_load_ends_in_a_404(client):
    html = client.get("/").get_data(as_text=True)
    icon = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', html).group(1)
    assert client.get(icon).status_code == 200
    browsers_ask = client.get("/favicon.ico")
    assert browsers_ask.status_code == 200 and browsers_ask.mimetype == "image/svg+xml"
    assert b"<svg" in browsers_ask.data
