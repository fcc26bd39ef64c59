"""Long operator commands show progress and end with a summary (``flask counters rebuild``)."""

from __future__ import annotations

import re

from sqlalchemy import update

from chat.extensions import db
from chat.models import ConversationMember


def test_counters_rebuild_shows_progress_and_a_summary(app, make_user):
    people = [make_user() for _ in range(3)]
    for other in people[1:]:
        people[0].send(people[0].open_with(other), "hi")
    # Break one counter, as a bug or a hand edit would.
    db.session.execute(update(ConversationMember).where(ConversationMember.user_id == people[1].id)
                       .values(unread_count=7))
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["counters", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "checking member rows" in result.output  # the bar's label (the bar itself needs a terminal)
    summary = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"counters rebuilt in \d+\.\d s: 4 checked, 1 member rows were wrong and are fixed",
                        summary), summary
