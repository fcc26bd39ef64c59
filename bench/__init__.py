"""Benchmarks on the production stack (``make bench`` = ``python -m bench``).

``bench.stack`` starts the stack the Procfile runs (gunicorn, a Celery worker, a private
Redis, PostgreSQL when reachable); each benchmark in ``bench.__main__.BENCHMARKS`` takes the
running stack and returns rows for the table printed at the end.
"""
