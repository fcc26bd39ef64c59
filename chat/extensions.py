"""Unbound extension instances; ``create_app`` binds them to an application."""

import threading

from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Rows are not expired by a commit: a request that commits and then answers builds its answer
# from what it holds instead of reloading every row (each request has its own session).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class DocumentOnReadApi(Api):
    """flask-smorest's ``Api``, writing each blueprint's routes into the OpenAPI document when
    the document is first read instead of when the blueprint is registered.

    Documenting every route (each schema resolved into JSON Schema) was about two thirds of
    ``create_app``'s time, paid by every process that builds the app (each web and Celery
    worker, beat, every ``flask`` command, every test's app), while only ``/openapi.json``,
    the docs page and the tests that read the document need it. The document is the same:
    the same calls in the same order, made once, under a lock (two threads may ask first).
    """

    def init_app(self, app, *, spec_kwargs=None):
        self._undocumented: list[tuple] = []
        self._documenting = threading.Lock()
        super().init_app(app, spec_kwargs=spec_kwargs)

    def register_blueprint(self, blp, *, parameters=None, **options):
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    @property
    def spec(self):
        if getattr(self, "_undocumented", None):
            with self._documenting:
                # Emptied only once all is written: a thread that finds it empty gets the
                # whole document, never one half written by another thread.
                for blp, name, parameters in self._undocumented:
                    blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                    self._spec.tag({"name": name, "description": blp.description})
                self._undocumented = []
        return self._spec

    @spec.setter
    def spec(self, value):
        self._spec = value


api = DocumentOnReadApi()
