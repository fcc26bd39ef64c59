"""Search latency as one user's messages grow: a common word, a rare word, and a
two-character Chinese term (shorter than a trigram: found through the pairs the search
document adds), newest page of 20 hits.

Messages go straight into the database with set-based SQL, each with its search document:
a few hundred message texts are made here and their documents written by the service's own
``chat.search.text.document``; every message is one of them with its number in front (a
number is a word of its own, so the document is the number's followed by the text's). The
searches go through the real HTTP API, timed by wrk over one connection at each size, like
the history benchmark (long enough for 1,000 samples, at most a minute; a server of its own
with the per-user rate limits raised, since one user searching back to back asks for far more
than a person's allowance).
"""

from __future__ import annotations

import os
import random
from urllib.parse import quote

from bench.bulk import on_bulk_data, read_latency, read_note
from bench.stack import Row, Stack
from bench.wrk import wrk_row
from chat.search.text import document

# BENCH_SEARCH_SIZES="20000" makes a quick check of the benchmark itself.
SIZES = tuple(int(s) for s in os.environ.get("BENCH_SEARCH_SIZES", "100000 1000000").split())
CHATS = 20  # the reader's conversations the messages are spread over
COMMON, RARE, CHINESE = "meeting", "zanzibar", "火锅"
RARE_EVERY = 10_000  # one message in this many has the rare word
TEXTS = 997  # distinct texts (prime: the rare one does not line up with a chat)
WORDS = (
    "project budget review client deadline lunch coffee report draft slides office train "
    "ticket hotel weekend photo music movie dinner birthday invoice contract design server "
    "deploy release bug issue test team manager holiday family doctor school garden weather "
    "football market price order delivery package address phone email password account"
).split()
CHINESE_WORDS = (
    "我们 明天 上午 下午 开会 项目 预算 客户 报告 周末 电影 晚饭 生日 北京 上海 "
    "天气 咖啡 地址 电话 快递 医生 学校 朋友 家人 工作 时间 问题 测试 发布 设计"
).split()


def _texts() -> list[tuple[str, str]]:
    """(content, document) of the texts messages are made of; deterministic."""
    pick = random.Random(25)
    texts = []
    for i in range(TEXTS):
        words = pick.sample(WORDS, 6)
        if pick.random() < 0.3:
            words.insert(pick.randrange(len(words)), COMMON)
        chinese = "".join(pick.sample(CHINESE_WORDS, 4))
        if pick.random() < 0.02:  # a two-character term in about 2% of messages
            chinese = chinese[:4] + CHINESE + chinese[4:]
        content = f"{' '.join(words[:4])} {chinese} {' '.join(words[4:])}"
        texts.append((content, document("text", content)))
    return texts


def _add_messages(stack: Stack, chats: list[tuple[int, int]], reader_id: int, first: int, last: int) -> None:
    """Messages numbered ``first``..``last``, spread over ``chats`` (id, peer), every other
    one sent by the reader."""
    with stack.connect() as conn:
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_texts (i int PRIMARY KEY, content text, doc text)"
        )
        if not conn.execute("SELECT count(*) FROM bench_texts").fetchone()[0]:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO bench_texts VALUES (%s, %s, %s)",
                    [(i, c, d) for i, (c, d) in enumerate(_texts())],
                )
        rare = f"{RARE} shipping update", document("text", f"{RARE} shipping update")
        conn.execute(
            """INSERT INTO messages (key, conversation_id, sender_id, type, content, client_time,
                                     created_at, pushed_at, search_text)
               SELECT gen_random_uuid()::text, (%(chats)s::bigint[])[1 + n %% %(count)s],
                      CASE WHEN n %% 2 = 0 THEN %(reader)s ELSE (%(peers)s::bigint[])[1 + n %% %(count)s] END,
                      'text',
                      n || ' ' || CASE WHEN n %% %(every)s = 0 THEN %(rare)s ELSE t.content END, 1,
                      (extract(epoch from now()) * 1000)::bigint, (extract(epoch from now()) * 1000)::bigint,
                      ' ' || n || CASE WHEN n %% %(every)s = 0 THEN %(rare_doc)s ELSE t.doc END
               FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
               JOIN bench_texts t ON t.i = n %% %(texts)s""",
            {
                "chats": [c for c, _ in chats],
                "peers": [p for _, p in chats],
                "count": len(chats),
                "reader": reader_id,
                "every": RARE_EVERY,
                "rare": rare[0],
                "rare_doc": rare[1],
                "first": first,
                "last": last,
                "texts": TEXTS,
            },
        )
        conn.execute("ANALYZE messages")


def search_latency(stack: Stack) -> list[Row]:
    return on_bulk_data(stack, "search", _search)


def _search(stack: Stack, base: str) -> list[Row]:
    reader = stack.user("searcher")
    chats = []
    for _ in range(CHATS):
        peer = stack.user("peer")
        chats.append((reader.open_with(peer), peer.id))
    rows, have = [], 0
    for size in SIZES:
        _add_messages(stack, chats, reader.id, have + 1, size)
        have = size
        stack.sql("VACUUM (ANALYZE) messages")
        for label, term in (("common word", COMMON), ("rare word", RARE), ("2-char Chinese", CHINESE)):
            result = read_latency(stack, base, reader, f"/message/search?q={quote(term)}&limit=20")
            rows.append(
                wrk_row(
                    f"GET /message/search {label}, {size:,} msgs",
                    result,
                    f"one user, {CHATS} chats, newest 20 hits; {read_note(result)}",
                )
            )
    return rows
