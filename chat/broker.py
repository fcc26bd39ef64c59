"""The Celery broker transport: kombu's Redis transport, made to survive Redis going away.

When Redis dies under a worker, Celery closes the broken connection, and kombu's channel
tries, while closing, to give the worker's unacknowledged messages back to Redis. With the
connection already torn down, kombu builds a new client from a connection object that is
gone and raises ``AttributeError`` ("'NoneType' object has no attribute 'hostname'"); that
is not a connection error, so the worker takes it as unrecoverable and exits, and nothing is
pushed again until someone restarts it. Seen with kombu 5.7 on a Redis SIGKILL.

Here that give-back may fail: the messages are either still in Redis's unacknowledged set
(and come back after the visibility timeout) or were lost with Redis's memory (the
sweepers queue the work again from the database). The worker then reconnects, as it does
for any other connection error. ``celery_config`` names this class as the broker transport.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        try:
            return super().restore_unacked(client)
        except Exception as exc:  # noqa: BLE001 - whatever the torn-down connection raises
            log.warning("could not give %d unacknowledged messages back to the broker (%s); the "
                        "visibility timeout and the sweepers return them", len(self._delivered), exc)
            self._delivered.clear()
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
