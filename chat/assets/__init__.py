"""Uploaded files: storage backends (local disk, S3-compatible), sniffing, images, the rules
of storing and deleting them, and serving them.

``init_app`` builds the configured storage once per app (``app.extensions["asset_storage"]``);
``chat.assets.service`` holds the rules of storing and fetching, ``chat.assets.lifecycle``
how long a file lives, ``chat.assets.serving`` the HTTP answer of a file.
"""

from __future__ import annotations

from flask import Flask

from chat.assets.storage import build_storage


def init_app(app: Flask) -> None:
    app.extensions["asset_storage"] = build_storage(app.config)
