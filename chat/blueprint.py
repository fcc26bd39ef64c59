"""The Blueprint every API route is declared on: flask-smorest's, reading its arguments with
``chat.request_parser``, plus ``operation``, one decorator that says all an API operation is
(route, method, success envelope, authentication, arguments, documentation)."""

from __future__ import annotations

import functools

from flask_smorest import Blueprint as SmorestBlueprint

from chat.db import each_statement_commits
from chat.request_parser import parser


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = parser
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **SmorestBlueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
        "body_or_query": "application/json",
    }

    def operation(
        self,
        rule: str,
        method: str,
        envelope,
        *,
        auth,
        security: list,
        args=None,
        location: str = "json",
        each_statement_commits: bool = False,
        example: dict | None = None,
        **doc,
    ):
        """One API operation in one decorator: its route and method, the envelope it answers
        200 with, how it authenticates (``auth`` checks, ``security`` documents), and what it
        reads (``args`` from ``location``); further OpenAPI ``doc`` as flask-smorest takes it.
        ``each_statement_commits``: the operation reads, and writes no more than one statement
        at a time (``chat.db.each_statement_commits``). ``example``: the request body
        /docs offers, which works as sent on the demo data (``chat.examples``)."""

        def decorate(view):
            if each_statement_commits:
                view = _each_statement_commits(view)
            if args is not None:
                # One schema instance for every request (a class would be instantiated per
                # request, copying its fields each time); loading keeps no state on it.
                view = self.arguments(
                    args() if isinstance(args, type) else args, location=location, example=example
                )(view)
            view = auth(view)
            view = self.doc(security=security, **doc)(view)
            view = self.response(200, envelope)(view)
            return self.route(rule, methods=[method])(view)

        return decorate


def _each_statement_commits(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        each_statement_commits()
        return view(*args, **kwargs)

    return wrapper
