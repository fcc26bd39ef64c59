"""Tests of the task queues (``chat.runner``)."""
