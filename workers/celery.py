"""The Celery entry point: builds the Flask app and exposes its Celery app as ``app``."""

from chat import create_app

flask_app = create_app()
app = flask_app.extensions["celery"]

# A web request's publish gives up after REDIS_SOCKET_TIMEOUT (config.py). A worker's consumer
# waits on BRPOP, a second at a time, on its connection: its reads get longer than that, or
# every idle poll would end in a timeout and a reconnect.
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "socket_timeout": max(5.0, flask_app.config["REDIS_SOCKET_TIMEOUT"]),
}
