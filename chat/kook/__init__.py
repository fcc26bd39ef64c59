"""KOOK v3 dialect (seed 003): blueprints under /api/v3 with KOOK's envelope and token auth."""
