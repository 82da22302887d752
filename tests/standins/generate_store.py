#!/usr/bin/env python3
"""Writes a legacy agent's store the way the agent itself would: by feeding the stand-in
(legacy_agents.py) the requests its clients send, in-process, with a frozen clock.

Usage:
    generate_store.py AGENT --data-dir DIR --interactions N [--seed S] [--start EPOCH]

The store lands where the agent keeps it under DIR. Besides N ordinary writes it has the
quirky cases the spec names: non-ASCII text (accents, CJK, emoji outside the BMP), a
contextual session id left out (stored under "null"), sessions past the 50-interaction
cap with rebuilt summaries, a summary cut by get_context, key decisions, jarvis reminders
(saved though the agent answers with an error), memories that are null, strings, numbers
and nested objects, a cleared user, a cleared and a deleted session.

Prints one JSON line: what was written, counted as the store holds it.
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import legacy_agents  # noqa: E402

WORDS = ["database", "thread", "kitchen", "lights", "Grüße", "naïve", "café", "東京", "🎉",
         "weather", "http", "reminder", "async", "route", "error", "exception", "piano"]


def call(agent, request):
    """One request, as the agent's socket loop handles it (exceptions become replies)."""
    return json.loads(legacy_agents.answer(agent, json.dumps(request).encode()))


def sentence(rng, n=8):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, n)))


def session_memory(agent, rng, n):
    agent.db.execute("PRAGMA synchronous = OFF")
    sessions = max(1, n // 20)
    written = 0
    ids = []
    for s in range(sessions):
        sid = f"sess-{s:05d}" if s % 7 else None  # every 7th: the agent picks a uuid4
        req = {"action": "create_session", "user_id": f"user-{s % 13}",
               "metadata": {"device": rng.choice(["kitchen", "car", "télé"]), "n": s}}
        if sid:
            req["session_id"] = sid
        reply = call(agent, req)
        ids.append(reply["session_id"])
    while written < n:
        sid = rng.choice(ids)
        req = {"action": "add_interaction", "session_id": sid,
               "role": rng.choice(["user", "assistant"]), "content": sentence(rng)}
        if rng.random() < 0.3:
            req["metadata"] = {"lang": rng.choice(["de", "ja", "en"]), "score": rng.random()}
        assert call(agent, req)["status"] == "success"
        written += 1
    # A cleared session keeps its row; a deleted one is gone with its interactions.
    call(agent, {"action": "clear_session", "session_id": ids[0]})
    call(agent, {"action": "delete_session", "session_id": ids[-1]})
    agent.db.commit()
    count = lambda sql: agent.db.execute(sql).fetchone()[0]
    return {"sessions": count("SELECT count(*) FROM sessions"),
            "interactions": count("SELECT count(*) FROM interactions")}


def contextual_memory(agent, rng, n):
    agent.save = lambda: None  # the agent rewrites its file on every write: once, at the end
    sessions = max(2, n // 60)
    types = ["code", "user_query", "system_response", "error", "note"]
    for i in range(n):
        sid = f"ctx-{rng.randrange(sessions):04d}"
        if i % 97 == 0:
            sid = None  # stored under "null"
        req = {"action": "add_interaction", "type": rng.choice(types),
               "content": sentence(rng, 12)}
        if sid is not None:
            req["session_id"] = sid
        if rng.random() < 0.2:
            req["metadata"] = {"file": "app.py", "line": rng.randrange(500)}
        call(agent, req)
        if i % 50 == 0:
            call(agent, {"action": "record_decision", "session_id": sid or None,
                          "decision": "use " + sentence(rng, 3)})
        if i % 400 == 0 and sid is not None:
            call(agent, {"action": "get_context", "session_id": sid, "max_tokens": 40})
    legacy_agents.ContextualMemoryAgent.save(agent)
    return {"sessions": len(agent.sessions),
            "interactions": sum(len(v) for v in agent.sessions.values()),
            "summaries": len(agent.summaries),
            # Rebuilt past the cap: more than the key decisions.
            "rebuilt_summaries": sum(1 for s in agent.summaries.values() if set(s) - {"key_decisions"}),
            "decisions": sum(len(s.get("key_decisions", [])) for s in agent.summaries.values())}


def jarvis_memory(agent, rng, n):
    agent.save = lambda: None
    users = max(2, n // 25)
    for i in range(n):
        user = f"user-{rng.randrange(users):04d}"
        pick = i % 10
        if pick == 0:
            memory = {"type": "reminder", "text": "water the plants 🌱", "at": "18:00"}
        elif pick == 1:
            memory = None
        elif pick == 2:
            memory = {"text": sentence(rng), "tags": ["a", "b"], "nested": {"x": [1, 2.5, None]}}
        elif pick == 3:
            memory = 42
        else:
            memory = sentence(rng)
        req = {"action": "add_memory", "memory": memory}
        if i % 50 != 1:
            req["user_id"] = user  # else: the agent's "default" user
        call(agent, req)
    call(agent, {"action": "clear_memories", "user_id": "user-0000"})
    legacy_agents.JarvisMemoryAgent.save(agent)
    return {"users": len(agent.memories),
            "memories": sum(len(v) for v in agent.memories.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", choices=sorted(legacy_agents.AGENTS))
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=float, default=1_780_000_000.0)
    args = parser.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    rng = random.Random(args.seed)
    agent = legacy_agents.AGENTS[args.agent](
        data_dir=args.data_dir, clock=legacy_agents.Clock(args.start), rng=rng,
        idle_expiry=3600.0, bind="tcp://127.0.0.1:0")
    counts = globals()[args.agent](agent, rng, args.interactions)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
