#!/usr/bin/env python3
"""Reads every key the legacy stores hold once through the proxy, once the outboxes have
drained, then prints what the proxy's shadow comparisons and live reads came to, from its
/metrics.

    demo_reads.py METRICS DEMO_DIR SESSION_EP CONTEXTUAL_EP JARVIS_EP   (the reads)
    demo_reads.py --metrics-only METRICS                               (the report)
"""

import json
import os
import sqlite3
import sys
import urllib.request

import zmq


def read_everything(demo, session, contextual, jarvis):
    ctx = zmq.Context()

    def ask(endpoint, requests):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.RCVTIMEO, 10000)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        for r in requests:
            s.send_json(r)
            s.recv()
        s.close()

    db = sqlite3.connect(os.path.join(demo, "session_memory", "data", "session_memory.db"))
    sessions = [r[0] for r in db.execute("SELECT session_id FROM sessions")]
    ask(session, [{"action": "get_context", "session_id": sid} for sid in sessions])
    with open(os.path.join(demo, "contextual_memory", "contextual_memory_store.json")) as f:
        store = json.load(f)
    ask(contextual, [{"action": "get_context", "session_id": sid} for sid in store["sessions"]])
    with open(os.path.join(demo, "jarvis_memory", "jarvis_memory_store.json")) as f:
        users = list(json.load(f))
    ask(jarvis, [{"action": "get_memories", "user_id": u} for u in users])
    return len(sessions) + len(store["sessions"]) + len(users)


def main():
    if sys.argv[1] == "--metrics-only":
        return report(sys.argv[2])
    n = read_everything(*sys.argv[2:6])
    print(f"   read every key once after the drain: {n} reads")


def report(metrics):
    text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    comparisons, served, fallbacks, ratio = {}, {}, {}, {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{")[0]
        labels = dict(
            part.split("=", 1) for part in series[len(name) + 1:-1].split(",") if "=" in part
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        value = float(value)
        if name == "memshift_comparisons_total" and value > 0:
            key = (labels["agent"], labels["action"])
            comparisons.setdefault(key, []).append(f"{labels['outcome']} {int(value)}")
        elif name == "memshift_served_total" and value > 0:
            key = (labels["agent"], labels["action"])
            served.setdefault(key, []).append(f"{labels['backend']} {int(value)}")
        elif name == "memshift_live_fallbacks_total" and value > 0:
            fallbacks.setdefault(labels["agent"], []).append(f"{labels['reason']} {int(value)}")
        elif name == "memshift_inconsistency_ratio":
            ratio[labels["agent"]] = value
    for (agent, action), parts in sorted(comparisons.items()):
        print(f"   compared  {agent:<18} {action:<13} " + ", ".join(sorted(parts)))
    for (agent, action), parts in sorted(served.items()):
        print(f"   served    {agent:<18} {action:<13} by " + ", ".join(sorted(parts)))
    for agent, parts in sorted(fallbacks.items()):
        print(f"   fallbacks {agent:<18} " + ", ".join(sorted(parts)))
    for agent, r in sorted(ratio.items()):
        print(f"   inconsistency {agent:<14} {100 * r:.3f} % (the plan's rollback trigger: 0.1 %)")


if __name__ == "__main__":
    main()
