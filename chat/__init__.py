"""The chat application. ``create_app`` (in ``chat.app``) builds a configured Flask app.

The package itself imports nothing: gunicorn's master imports ``chat.platform.logging_setup`` (its
logger class) before it forks gevent workers, and a master that had imported the whole app
(and with it ssl) would hand workers an ssl module that gevent patches too late.
"""

from __future__ import annotations


def create_app(config_class=None):
    """Build the app (see ``chat.app.create_app``)."""
    from chat.app import create_app as build  # noqa: PLC0415  (keeps the package light, see above)

    return build(config_class)
