"""Wrappers and overrides of third-party libraries: the plumbing under the chat, not the chat.

Each module here adapts one library to how this service runs (gevent workers, Redis going
away, untrusted bodies) or fixes a behaviour of it, and would read the same in any Flask
service:

- ``green``: psycopg waiting on its socket with gevent's watchers;
- ``coalesce``: concurrent Redis script calls sharing one pipelined round trip (gevent);
- ``broker``: kombu's Redis transport (Celery's broker), made to survive Redis going away;
- ``limiter_storage``, ``limiter_fallback``: flask-limiter's Redis storage (a request's
  limits counted in one round trip) and its in-process fallback, kept under concurrency;
- ``json_answers``, ``strict_json``, ``compiled_dump``: JSON encoding by orjson, JSON
  parsing without what a JSON client cannot read back, marshmallow dumps by a plan;
- ``http_guards``: Werkzeug's and gunicorn's request handling made strict (no redirects,
  body caps, broken chunked bodies, OPTIONS);
- ``logging_setup``: logging, gunicorn's and Celery's included (request ids, redaction);
- ``passwords``: Argon2id hashing on OS threads, off gevent's loop.

Nothing here knows the chat domain: no model, service, conversation or message. A module
may use the app's lowest vocabulary (the error type of ``chat.errors``, the envelopes of
``chat.dialects``, the marks of ``chat.endpoints``) so that what it answers looks like
every other answer; ``.importlinter`` places the package below the data model and above that
vocabulary, so anything that needs more belongs at the top of ``chat`` instead (as
``chat.openapi_errors`` does: it lists the chat's routes and what each can refuse).

Like ``chat`` itself, this package imports nothing when imported: gunicorn's master loads
``chat.platform.logging_setup`` before it forks gevent workers.
"""
