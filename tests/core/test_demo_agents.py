"""The demo's agents exist as accounts (issue 25 item 6): every team member
gets an agent account on the users page and is online for the demo."""

from __future__ import annotations

from typing import Any

from omnidesk.config import AssignmentConfig
from omnidesk.demo import _demo_agents
from omnidesk.store.assignment import agent_state
from omnidesk.store.users import get_user, save_team


async def test_demo_agents_are_accounts_and_online(store: Any) -> None:
    await store.write(save_team, "support", members=["alice", "bob"], create=True)
    policy = AssignmentConfig()
    names = await store.write(_demo_agents, policy)
    assert names == ["alice", "bob"]
    for name in names:
        user = await store.read(get_user, name)
        assert user["role"] == "agent" and user["teams"] == ["support"]
        assert await store.read(agent_state, name, policy) == "online"
    # Again (a second demo run): no duplicate, no error.
    assert await store.write(_demo_agents, policy) == ["alice", "bob"]
