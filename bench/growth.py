"""History and conversation-list latency as data grows.

Data is added straight into the database with set-based SQL (PostgreSQL's generate_series),
so a conversation of 100,000 messages or a user with 2,000 conversations takes seconds to
make; the reads go through the real HTTP API, timed by wrk over one connection (one request
after another: the server's time plus loopback) at each size, for long enough to have 1,000
samples (``bench.wrk.one_at_a_time``, at most a minute), on a server with the per-user
limits raised; the counters are rebuilt at the end (bench/bulk.py).
"""

from __future__ import annotations

from bench.bulk import on_bulk_data, read_latency, read_note
from bench.stack import Row, Stack
from bench.wrk import wrk_row

HISTORY_SIZES = (100, 10_000, 100_000)
LIST_SIZES = (10, 200, 2_000)


def _add_messages(stack: Stack, conversation_id: int, sender_id: int, count: int) -> None:
    with stack.connect() as conn:
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
    with stack.connect() as conn:
        conn.execute(
            """INSERT INTO users (id, username, username_key, nickname, avatar, identify_num, is_bot,
                                  created_at)
               SELECT %(first)s + n, 'peer' || (%(first)s + n), 'peer' || (%(first)s + n), 'peer', '',
                      '0001', false, 0
               FROM generate_series(1, %(count)s) AS n""",
            {"first": first_peer_id, "count": count},
        )
        conn.execute(
            """INSERT INTO conversations (id, code, user_low, user_high, created_at)
               SELECT -100000000 - %(first)s %% 800000000 - n, md5(random()::text || n),
                      least(%(me)s, %(first)s + n),
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


def history_and_list_growth(stack: Stack) -> list[Row]:
    return on_bulk_data(stack, "history / list growth", _growth)


def _growth(stack: Stack, base: str) -> list[Row]:
    rows = []
    reader, writer = stack.user("reader"), stack.user("writer")
    cid = reader.open_with(writer)
    have = 0
    for size in HISTORY_SIZES:
        _add_messages(stack, cid, writer.id, size - have)
        have = size
        newest = read_latency(stack, base, reader, f"/message?conversationid={cid}&limit=20")
        deep = read_latency(stack, base, reader, f"/message?conversationid={cid}&start={size - 40}&limit=20")
        rows.append(
            wrk_row(
                f"GET /message newest page, {size:,} msgs",
                newest,
                f"limit 20, marks read; {read_note(newest)}",
            )
        )
        rows.append(
            wrk_row(f"GET /message offset {size - 40:,}", deep, f"start= paging, limit 20; {read_note(deep)}")
        )
    have = 1  # the reader's conversation with the writer
    for index, size in enumerate(LIST_SIZES):
        _add_conversations(stack, reader.id, size - have, first_peer_id=1_000_000 + index * 10_000)
        have = size
        listed = read_latency(stack, base, reader, "/conversation?limit=20")
        rows.append(wrk_row(f"GET /conversation, {size:,} chats", listed, f"newest 20; {read_note(listed)}"))
    return rows
