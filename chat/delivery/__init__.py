"""What happens after a commit: pushing messages, moving read pointers, counting unread,
announcing events to streams and webhooks, and the sweeper that recovers lost pushes.

``push`` delivers a stored message to its recipient, exactly once per claim; ``reads``
moves read pointers; ``counters`` holds the one rule for "unread" and the rebuild that
checks it; ``events`` announces an event on a user's stream and to their webhooks;
``payloads`` builds each event's data once, in a form both dialects' clients can read.
"""
