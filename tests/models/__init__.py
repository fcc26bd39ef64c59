"""Tests of the data model (``chat.models``)."""
