"""The web chat page at ``/`` and the API docs viewer at ``/docs``: one blueprint.

The page is plain HTML, CSS and JavaScript from this package (no build step, nothing fetched
from elsewhere) and talks to the service only through the public API and the event stream,
like any other client. The classic API wants an app key; the server hands the page the one
configured for it (``WEB_APP_KEY``, or the file ``flask demo`` writes), in a ``<meta>`` tag.

``/docs`` is Swagger UI from the ``swagger-ui-bundle`` package's own files, reading
``/openapi.json``; its Authorize dialog takes both credentials (app key + session, token).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

log = logging.getLogger(__name__)

web_blp = Blueprint(
    "web", __name__, static_folder="static", static_url_path="/web/static", template_folder="templates"
)

# The page's own files only. Pictures, video and sound load only from this origin (the files
# the service stores, under /files/): media a sender links from elsewhere is shown as a link,
# so opening a conversation never makes the reader's browser fetch an address the sender
# chose. blob: and data: for what the page makes itself (a pasted image's preview).
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI sets inline styles and shows its logo as a data: image.
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# The package's files /docs uses, and no others: the package also ships Swagger UI's stock
# pages (index.html, oauth2-redirect.html), which would be served on this origin without the
# docs policy and which fetch petstore.swagger.io and validator.swagger.io.
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})


def web_app_key() -> str | None:
    """The app key the page uses: ``WEB_APP_KEY``, else the file ``flask demo`` wrote."""
    config = current_app.config
    if config.get("WEB_APP_KEY"):
        return config["WEB_APP_KEY"]
    path = config.get("WEB_APP_KEY_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:  # not made yet (no `flask demo`), or unreadable: the page says so
        return None


def warn_if_unconfigured(app) -> None:
    """At start-up: tell the operator when the page has no app key to use (it then tells its
    visitors that it is not configured)."""
    if not app.config.get("WEB_APP_KEY") and not app.config.get("WEB_APP_KEY_FILE") and not app.testing:
        log.warning(
            "WEB_APP_KEY is not set: the web page at / tells visitors it is not configured. "
            "Set it to the last line of `flask app-key create web` (docs/operations.md)."
        )


def _page(template: str, policy: str, **context):
    response = current_app.make_response(render_template(template, **context))
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # image URLs must not learn the page's address
    response.headers["Cache-Control"] = "no-store"  # the key in the page may be rotated
    return response


@web_blp.route("/", methods=["GET"])
def show_chat():
    """Show the chat page."""
    return _page("index.html", PAGE_POLICY, app_key=web_app_key())


@web_blp.route("/sw.js", methods=["GET"])
def service_worker():
    """Serve the page's service worker from the root, so its scope is the whole page."""
    response = send_from_directory(Path(__file__).parent / "static", "sw.js", max_age=0)
    response.headers["Cache-Control"] = "no-cache"  # a new version takes over at the next visit
    response.headers["Content-Security-Policy"] = "default-src 'none'; connect-src 'self'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@web_blp.route("/docs", methods=["GET"])
def show_docs():
    """Show the OpenAPI document in Swagger UI."""
    return _page("docs.html", DOCS_POLICY)


@web_blp.route("/favicon.ico", methods=["GET"])
def show_favicon():
    """Serve the icon browsers ask for on every page (the pages also name it in a link)."""
    return send_from_directory(web_blp.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)


@web_blp.route("/docs/assets/<path:filename>", methods=["GET"])
def docs_asset(filename: str):
    """Serve one of the swagger-ui-bundle package's files that ``/docs`` uses."""
    if filename not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_path, filename, max_age=3600)
