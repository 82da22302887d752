#!/usr/bin/env python3
"""What the legacy stand-ins hold after the demo traffic, to set beside PostgreSQL.

    demo_legacy_counts.py DEMO_DIR
"""

import json
import os
import sqlite3
import sys


def main():
    demo = sys.argv[1]
    db = sqlite3.connect(os.path.join(demo, "session_memory", "data", "session_memory.db"))
    interactions = db.execute("SELECT count(*), count(DISTINCT session_id) FROM interactions").fetchone()
    sessions = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
    print(f"   session_memory     {interactions[0]} interactions in {interactions[1]} sessions, "
          f"{sessions} sessions in all")
    with open(os.path.join(demo, "contextual_memory", "contextual_memory_store.json")) as f:
        store = json.load(f)
    kept = sum(len(v) for v in store["sessions"].values())
    decisions = sum(len(s.get("key_decisions", [])) for s in store["summaries"].values())
    print(f"   contextual_memory  {kept} interactions in {len(store['sessions'])} sessions "
          f"(it keeps the newest 50 per session; the orchestrator keeps every one), "
          f"{decisions} decisions")
    with open(os.path.join(demo, "jarvis_memory", "jarvis_memory_store.json")) as f:
        store = json.load(f)
    memories = sum(len(v) for v in store.values())
    users = sum(1 for v in store.values() if v)
    print(f"   jarvis_memory      {memories} memories of {users} users")


if __name__ == "__main__":
    main()
