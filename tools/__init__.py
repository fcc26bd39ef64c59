"""Maintenance scripts for the repository itself (run as ``python -m tools.<name>``); the
service never imports them."""
