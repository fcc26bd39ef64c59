"""Flask-Limiter, made to keep its promise of an in-process fallback under concurrency.

Flask-Limiter switches to its in-memory fallback when a storage call fails, but only for the
request that fails first: a request that was already waiting on the storage (Redis frozen or
gone) and fails after the switch re-raises the storage error, a 500. Here such a request is
counted in the fallback as well, as if it had started after the switch.
"""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded


class FallbackLimiter(Limiter):
    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except RateLimitExceeded:
            raise
        except Exception:
            if not (self._in_memory_fallback_enabled and self._storage_dead):
                raise
            self.logger.warning(
                "rate limit storage failed after the switch to in-process limits; counting this request there"
            )
            self.context.seen_limits.clear()
            super()._check_request_limit(callable_name, in_middleware)
