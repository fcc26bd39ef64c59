"""The classic API: accounts, conversations and messages in the ``{code, msg, data}`` envelope."""
