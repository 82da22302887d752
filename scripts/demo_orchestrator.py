#!/usr/bin/env python3
"""Demo of the Memory Orchestrator: a session, a handful of memories (one with a TTL),
a repeated write that stays one row, and the three search types side by side.

    demo_orchestrator.py --endpoint EP --metrics HOST:PORT
"""

import argparse
import json
import time
import urllib.request

import zmq

MEMORIES = [
    ("dentist", "decision", "Dentist appointment moved to Tuesday at nine"),
    ("mum", "conversation", "Remind me to call mum on Sunday evening"),
    ("colour", "context", "My favourite colour is deep blue"),
    ("milk", "conversation", "Add oat milk and eggs to the shopping list"),
    ("whale", "context", "The blue whale is the largest animal ever known"),
    ("brief", "context", "The parcel code for today is 4711"),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--metrics", required=True)
    args = p.parse_args()
    socket = zmq.Context().socket(zmq.REQ)
    socket.setsockopt(zmq.RCVTIMEO, 10000)
    socket.connect(args.endpoint)
    n = [0]

    def call(action, payload, session_id=None):
        n[0] += 1
        socket.send_json({"action": action, "session_id": session_id, "payload": payload,
                          "request_id": f"demo-{n[0]}"})
        reply = socket.recv_json()
        if reply["status"] != "success":
            raise SystemExit(f"{action} failed: {json.dumps(reply['error'])}")
        return reply["data"]

    call("create_session", {"session_id": "demo-session", "user_id": "demo-user",
                            "session_metadata": {"session_type": "conversation"}})
    for key, kind, text in MEMORIES:
        payload = {"memory_id": f"demo-{key}", "memory_type": kind, "user_id": "demo-user",
                   "content": {"text": text}, "source_agent": "demo"}
        if key == "brief":
            payload["ttl"] = 2
        call("create", payload, "demo-session")
    again = call("create", {"memory_id": "demo-mum", "memory_type": "conversation",
                            "user_id": "demo-user", "source_agent": "demo",
                            "content": {"text": MEMORIES[1][2]}}, "demo-session")
    print(f"   {len(MEMORIES)} memories created; the same create sent again answers "
          f"{again['memory_id']} (created {again['created_at']}), still one row")

    while call("health", {})["embedding_backlog"]:
        time.sleep(0.1)
    for query in ["blue colour", "dentist tuesday"]:
        print(f"   search {query!r}:")
        for kind in ["semantic", "keyword", "hybrid"]:
            data = call("search", {"query": query, "search_type": kind,
                                   "filters": {"limit": 3, "user_id": "demo-user"}})
            hits = ", ".join(f"{r['memory_id'][5:]} {r['similarity_score']:.2f}"
                             for r in data["results"])
            print(f"     {kind:<8}  {hits}")
    time.sleep(2.1)
    left = call("batch_read", {"filter": {"user_id": "demo-user", "limit": 50}})
    print(f"   after 2 s the TTL memory has expired: {left['total_count']} of "
          f"{len(MEMORIES)} memories remain")
    summary = call("summarize", {"memory_type": "conversation"}, "demo-session")
    print("   summarize (extractive): " + summary["summary"].replace("\n", "\n     "))
    call("end_session", {"summary": "demo done", "archive": True}, "demo-session")

    text = urllib.request.urlopen(f"http://{args.metrics}/metrics", timeout=5).read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("memshift_orchestrator_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            if float(value) > 0:
                action = labels.split('action="')[1].split('"')[0]
                outcome = labels.split('outcome="')[1].split('"')[0]
                counts[f"{action}/{outcome}"] = int(float(value))
    print("   orchestrator requests by action/outcome: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
