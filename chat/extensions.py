"""Unbound extension instances; ``create_app`` binds them to an application."""

from flask_limiter import ApplicationLimit, Limit, Limiter
from flask_migrate import Migrate
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


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = Api()


def _ratelimit(name: str):
    """A late-bound hook from ``chat.ratelimit`` (which imports models, so not at import time)."""

    def call(*args):
        from chat import ratelimit

        return getattr(ratelimit, name)(*args)

    call.__name__ = name
    return call


# Limits are read from the app's config on every request (see chat.ratelimit).
limiter = Limiter(
    key_func=_ratelimit("caller_key"),
    application_limits=[ApplicationLimit(_ratelimit("global_limit"),
                                         error_message=_ratelimit("global_breach_message"))],
    default_limits=[Limit(_ratelimit("route_limit"), scope=_ratelimit("bucket_name"), shared=True,
                          error_message=_ratelimit("route_breach_message"))],
    request_identifier=_ratelimit("request_identifier"),
)
