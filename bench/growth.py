"""History and conversation-list latency as data grows.

Data is added straight into the database with set-based SQL (PostgreSQL's generate_series),
so a conversation of 100,000 messages or a user with 2,000 conversations takes seconds to
make; the reads go through the real HTTP API, timed by wrk over one connection (one request
after another: the server's time plus loopback) at each size, for long enough to have 1,000
samples (``bench.wrk.one_at_a_time``, at most a minute). The counters are rebuilt at the end,
since rows added straight into the database skipped them.

One user reading back to back asks for far more than a person's allowance (120 requests of a
route per 10 s), so the reads go to a server of their own, like the stack's but with the
per-user rate limits raised (``RAISED_LIMITS``); each row says so.
"""

from __future__ import annotations

import psycopg

from bench.stack import RAISED_LIMITS, Row, Stack
from bench.wrk import errors_of, one_at_a_time, wrk_row
from devstack import flask_command

# The rows' notes: what differs from production's defaults, and why.
RAISED = "per-user limits raised (one user back to back)"
HISTORY_SIZES = (100, 10_000, 100_000)
LIST_SIZES = (10, 200, 2_000)


def _psycopg_url(stack: Stack) -> str:
    return stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


def _add_messages(stack: Stack, conversation_id: int, sender_id: int, count: int) -> None:
    with psycopg.connect(_psycopg_url(stack), autocommit=True) as conn:
        conn.execute(
            """INSERT INTO messages (key, conversation_id, sender_id, type, content, client_time,
                                     created_at, pushed_at)
               SELECT gen_random_uuid()::text, %(cid)s, %(sender)s, 'text', 'bench ' || n, 1,
                      (extract(epoch from now()) * 1000)::bigint, (extract(epoch from now()) * 1000)::bigint
               FROM generate_series(1, %(count)s) AS n""",
            {"cid": conversation_id, "sender": sender_id, "count": count},
        )
        # A live database's statistics follow its growth (autovacuum); a bulk insert's would
        # lag behind the reads and give plans no deployment sees.
        conn.execute("ANALYZE messages")


def _add_conversations(stack: Stack, user_id: int, count: int, first_peer_id: int) -> None:
    """``count`` more conversations for ``user_id``, with freshly made peer users."""
    with psycopg.connect(_psycopg_url(stack), autocommit=True) as conn:
        conn.execute(
            """INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, is_bot, created_at)
               SELECT %(first)s + n, 'peer' || (%(first)s + n), 'peer' || (%(first)s + n), 'peer', '', '0001', false, 0
               FROM generate_series(1, %(count)s) AS n""",
            {"first": first_peer_id, "count": count},
        )
        conn.execute(
            """INSERT INTO conversations (id, code, user_low, user_high, created_at)
               SELECT -100000000 - %(first)s %% 800000000 - n, md5(random()::text || n), least(%(me)s, %(first)s + n),
                      greatest(%(me)s, %(first)s + n), 0
               FROM generate_series(1, %(count)s) AS n""",
            {"first": first_peer_id, "count": count, "me": user_id},
        )
        conn.execute(
            """INSERT INTO conversation_members (conversation_id, user_id, unread_count, last_read_message_id,
                                                 last_read_time, latest_msg_time, hidden, cleared_before_id)
               SELECT c.id, u.uid, 0, 0, 0, (random() * 1e12)::bigint, false, 0
               FROM conversations c CROSS JOIN LATERAL (VALUES (c.user_low), (c.user_high)) AS u(uid)
               WHERE c.created_at = 0 AND (c.user_low = %(me)s OR c.user_high = %(me)s)
               ON CONFLICT DO NOTHING""",
            {"me": user_id},
        )
        conn.execute("ANALYZE users, conversations, conversation_members")


def _read_latency(base: str, stack: Stack, reader, path: str) -> dict:
    """GET ``path`` as ``reader`` over one connection, one request after another."""
    return one_at_a_time(f"{base}{path}", [stack.app_key, reader.token])


def history_and_list_growth(stack: Stack) -> list[Row]:
    if stack.database != "PostgreSQL":
        return [Row("history / list growth", 0, note="skipped: needs PostgreSQL")]
    server, base = stack.start_web(RAISED_LIMITS)
    try:
        return _growth(stack, base)
    finally:
        server.stop()


def _growth(stack: Stack, base: str) -> list[Row]:
    rows = []
    reader, writer = stack.user("reader"), stack.user("writer")
    cid = reader.open_with(writer)
    have = 0
    for size in HISTORY_SIZES:
        _add_messages(stack, cid, writer.id, size - have)
        have = size
        newest = _read_latency(base, stack, reader, f"/message?conversationid={cid}&limit=20")
        deep = _read_latency(base, stack, reader, f"/message?conversationid={cid}&start={size - 40}&limit=20")
        rows.append(
            wrk_row(
                f"GET /message newest page, {size:,} msgs", newest, f"limit 20, marks read; {_note(newest)}"
            )
        )
        rows.append(
            wrk_row(f"GET /message offset {size - 40:,}", deep, f"start= paging, limit 20; {_note(deep)}")
        )
    have = 1  # the reader's conversation with the writer
    for index, size in enumerate(LIST_SIZES):
        _add_conversations(stack, reader.id, size - have, first_peer_id=1_000_000 + index * 10_000)
        have = size
        listed = _read_latency(base, stack, reader, "/conversation?limit=20")
        rows.append(wrk_row(f"GET /conversation, {size:,} chats", listed, f"newest 20; {_note(listed)}"))
    # The rows added straight into the database skipped the counters: make them right, so a
    # benchmark that checks counters after this one checks its own work.
    flask_command(stack.env, "counters", "rebuild")
    return rows


def _note(result: dict) -> str:
    return f"wrk, 1 connection, {result['seconds']} s, {errors_of(result)}; {RAISED}"
