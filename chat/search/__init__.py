"""Message search: the searchable text of a message (``chat.search.text``) and the index
that finds it on each database (``chat.search.index``: pg_trgm on PostgreSQL, FTS5 with its
trigram tokenizer on SQLite). The rules of who finds what are in ``chat.services.search``.
"""
