"""Tests of the web page, the docs viewer and the browser client."""
