#!/usr/bin/env python3
"""Stand-ins for the three legacy memory agents, faithful to specs/legacy-agents.md.

They are written the way the real agents are: Python, pyzmq, a REP socket, `json.dumps`
with its defaults. So the quirks are not imitated but happen for the same reasons they do
in the real services: the contextual agent's success reply *is* the AttributeError of
calling `.get` on a bool, an invalid request gets `str(exception)`, replies are ASCII
escaped with Python's separators, floats are Python's repr.

Usage:
    legacy_agents.py AGENT --bind ENDPOINT --data-dir DIR [options]

AGENT is session_memory, contextual_memory or jarvis_memory. The agent prints
`READY <endpoint>` on stdout once bound (a `*` port resolved), then serves until killed.
Storage is the agent's own: DIR/data/session_memory.db (SQLite),
DIR/contextual_memory_store.json, DIR/jarvis_memory_store.json.

Options for tests:
    --frozen-clock EPOCH   timestamps start at EPOCH and advance 1 ms per reading, so two
                           agents fed the same requests produce the same bytes
    --seed N               seed for the uuid4s session_memory assigns
    --idle-expiry S        session_memory: sessions idle longer than S seconds are deleted
                           (default 3600, as the real agent)
    --expiry-interval S    session_memory: how often expiry runs (default 60)
"""

import argparse
import datetime
import json
import os
import random
import re
import sqlite3
import sys
import time
import uuid

import zmq


class Clock:
    """Wall-clock time, or a deterministic sequence when frozen."""

    def __init__(self, frozen_start=None):
        self.frozen = frozen_start
        self.readings = 0

    def now(self):
        if self.frozen is None:
            return time.time()
        self.readings += 1
        return self.frozen + self.readings / 1000.0

    def local_iso(self):
        return datetime.datetime.fromtimestamp(self.now()).isoformat()


def save_json(path, data):
    """Writes a store atomically, so a killed agent never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def load_json(path, default):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return default


# --- 1. session_memory ----------------------------------------------------------------


class SessionMemoryAgent:
    crashes_on_multipart = False

    def __init__(self, data_dir, clock, rng, idle_expiry, **_):
        os.makedirs(os.path.join(data_dir, "data"), exist_ok=True)
        self.db = sqlite3.connect(os.path.join(data_dir, "data", "session_memory.db"))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, user_id TEXT, "
            "created_at TEXT, last_active TEXT, metadata TEXT)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS interactions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "session_id TEXT, timestamp TEXT, role TEXT, content TEXT, metadata TEXT)"
        )
        self.db.commit()
        self.clock = clock
        self.rng = rng
        self.idle_expiry = idle_expiry

    def error(self, message):
        return {"status": "error", "message": message}

    def handle(self, request):
        action = request.get("action")
        request_id = request.get("request_id", "")
        if action == "create_session":
            return self.create_session(request, request_id)
        if action == "add_interaction":
            return self.add_interaction(request, request_id)
        if action == "get_context":
            return self.get_context(request, request_id)
        if action == "clear_session":
            return self.clear_session(request, request_id)
        if action == "delete_session":
            return self.delete_session(request, request_id)
        if action == "health_check":
            return {
                "status": "ok",
                "initialization_status": {
                    "is_initialized": True,
                    "error": None,
                    "progress": 1.0,
                    "components": {"core": True},
                },
            }
        return {"status": "error", "message": f"Unknown action: {action}", "request_id": request_id}

    def create_session(self, request, request_id):
        session_id = request.get("session_id") or str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        user_id = request.get("user_id", "default")
        metadata = request.get("metadata", {})
        now = self.clock.local_iso()
        try:
            self.db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (session_id, user_id, now, now, json.dumps(metadata)),
            )
            self.db.commit()
        except sqlite3.IntegrityError:
            return {"status": "error", "session_id": None, "request_id": request_id}
        return {"status": "success", "session_id": session_id, "request_id": request_id}

    def add_interaction(self, request, request_id):
        session_id = request.get("session_id")
        role = request.get("role")
        content = request.get("content")
        if not session_id or not role or not content:
            return {"status": "error", "message": "Missing required parameters", "request_id": request_id}
        known = self.db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if known is None:
            return {"status": "error", "request_id": request_id}
        now = self.clock.local_iso()
        self.db.execute(
            "INSERT INTO interactions (session_id, timestamp, role, content, metadata) VALUES (?, ?, ?, ?, ?)",
            (session_id, now, role, content, json.dumps(request.get("metadata", {}))),
        )
        self.db.execute("UPDATE sessions SET last_active = ? WHERE session_id = ?", (now, session_id))
        self.db.commit()
        return {"status": "success", "request_id": request_id}

    def get_context(self, request, request_id):
        session_id = request.get("session_id")
        if not session_id:
            return {"status": "error", "message": "Missing session_id", "request_id": request_id}
        max_tokens = request.get("max_tokens", 2000)
        rows = self.db.execute(
            "SELECT role, content, timestamp FROM interactions WHERE session_id = ? ORDER BY id DESC",
            (session_id,),
        ).fetchall()
        context = []
        total = 0
        for role, content, timestamp in rows:
            tokens = len(content) // 4
            if total + tokens > max_tokens:
                break
            total += tokens
            context.append({"role": role, "content": content, "timestamp": timestamp})
        context.reverse()
        self.db.execute(
            "UPDATE sessions SET last_active = ? WHERE session_id = ?", (self.clock.local_iso(), session_id)
        )
        self.db.commit()
        return {"status": "success", "context": context, "request_id": request_id}

    def clear_session(self, request, request_id):
        session_id = request.get("session_id")
        if not session_id:
            return {"status": "error", "message": "Missing session_id", "request_id": request_id}
        self.db.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
        self.db.commit()
        return {"status": "success", "request_id": request_id}

    def delete_session(self, request, request_id):
        session_id = request.get("session_id")
        if not session_id:
            return {"status": "error", "message": "Missing session_id", "request_id": request_id}
        self.db.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
        self.db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
        self.db.commit()
        return {"status": "success", "request_id": request_id}

    def housekeeping(self):
        """The background task: delete sessions idle for longer than the expiry."""
        cutoff = datetime.datetime.fromtimestamp(time.time() - self.idle_expiry).isoformat()
        stale = [r[0] for r in self.db.execute("SELECT session_id FROM sessions WHERE last_active < ?", (cutoff,))]
        for session_id in stale:
            self.db.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
        self.db.commit()


# --- 2. contextual_memory -------------------------------------------------------------

MAX_INTERACTIONS = 50


class ContextualMemoryAgent:
    crashes_on_multipart = True

    def __init__(self, data_dir, clock, bind, **_):
        self.path = os.path.join(data_dir, "contextual_memory_store.json")
        store = load_json(self.path, {"sessions": {}, "summaries": {}})
        self.sessions = store["sessions"]
        self.summaries = store["summaries"]
        self.clock = clock
        self.bind = bind
        self.started = clock.now()
        self.stats = {"total": 0, "successful": 0, "failed": 0, "health": 0}

    def save(self):
        save_json(self.path, {"sessions": self.sessions, "summaries": self.summaries})

    def error(self, message):
        self.stats["failed"] += 1
        return {"status": "error", "message": message}

    def handle(self, request):
        self.stats["total"] += 1
        action = request.get("action")
        if action == "add_interaction":
            result = self.add_interaction(
                request.get("session_id"), request.get("type"), request.get("content"), request.get("metadata")
            )
            # The real agent expects a dict here; add_interaction returns True.
            return {"status": "success", "interaction": result.get("interaction")}
        if action == "record_decision":
            result = self.record_decision(request.get("session_id"), request.get("decision"))
            return {"status": "success", "decision": result.get("decision")}
        if action == "get_context":
            summary = self.get_context(request.get("session_id"), request.get("max_tokens", 2000))
            self.stats["successful"] += 1
            return summary
        if action == "health_check":
            self.stats["health"] += 1
            now = self.clock.now()
            return {
                "status": "ok",
                "service": "contextual_memory_agent",
                "timestamp": now,
                "uptime_seconds": now - self.started,
                "total_requests": self.stats["total"],
                "successful_requests": self.stats["successful"],
                "failed_requests": self.stats["failed"],
                "health_check_requests": self.stats["health"],
                "bind_address": self.bind,
            }
        return self.error(f"Unknown action: {action}")

    def add_interaction(self, session_id, interaction_type, content, metadata):
        interaction = {"timestamp": self.clock.now(), "type": interaction_type, "content": content}
        if metadata is not None:
            interaction["metadata"] = metadata
        interactions = self.sessions.setdefault(session_id, [])
        interactions.insert(0, interaction)
        if len(interactions) > MAX_INTERACTIONS:
            self.summaries[session_id] = self.summarize(session_id, interactions)
            self.sessions[session_id] = interactions[:MAX_INTERACTIONS]
        self.save()
        return True

    def record_decision(self, session_id, decision):
        summary = self.summaries.get(session_id)
        if summary is None:
            summary = {"key_decisions": []}
            self.summaries[session_id] = summary
        summary.setdefault("key_decisions", []).append({"timestamp": self.clock.now(), "decision": decision})
        self.save()
        return True

    def get_context(self, session_id, max_tokens):
        summary = self.summaries.get(session_id)
        code_context = summary.get("code_context")  # no summary: 'NoneType' object has no attribute 'get'
        limit = (max_tokens // 2) * 4
        if code_context is not None and len(code_context) > limit:
            summary["code_context"] = code_context[:limit] + "..."
        conversation = summary.get("conversation_summary")
        if conversation is not None and len(conversation) > limit:
            summary["conversation_summary"] = conversation[:limit] + "..."
        self.save()
        return summary

    def summarize(self, session_id, interactions):
        previous = self.summaries.get(session_id) or {}
        summary = {"last_updated": self.clock.now()}
        code = [i["content"] for i in interactions if i.get("type") == "code"]
        if code:
            summary["code_context"] = code_summary(code)
        queries = [i["content"] for i in interactions if i.get("type") == "user_query"]
        responses = [i["content"] for i in interactions if i.get("type") == "system_response"]
        if queries or responses:
            text = f"Conversation Summary:\nTotal queries: {len(queries)}\nTotal responses: {len(responses)}\n"
            if queries:
                text += "\nRecent Queries:\n"
                for query in queries[:3]:
                    text += "- " + query[:100] + "...\n"
            summary["conversation_summary"] = text
        summary["errors_encountered"] = [
            i["content"][:200]
            for i in interactions
            if i.get("type") == "error" and ("error" in i["content"].lower() or "exception" in i["content"].lower())
        ]
        summary["key_decisions"] = previous.get("key_decisions", [])
        return summary


def code_summary(code):
    all_code = "\n\n".join(code)
    text = f"Code Summary:\nTotal snippets: {len(code)}\nTotal lines: {len(all_code.split(chr(10)))}\n"
    lowered = all_code.lower()
    if "database" in lowered:
        text += "\nDatabase Operations:\n- SQL queries and database interactions present\n"
    if "web" in lowered or "http" in lowered:
        text += "\nWeb Functionality:\n- HTTP endpoints and web routes present\n"
    if "concurrency" in lowered or "thread" in lowered:
        text += "\nConcurrency Features:\n- Threading and async operations present\n"
    haystack = (all_code + "\n\n" + text).lower()
    domains = []
    if re.search(r"database|sql|sqlite", haystack):
        domains.append("database operations")
    if re.search(r"web|http|flask|api|route", haystack):
        domains.append("web functionality")
    if re.search(r"concurrency|thread|async", haystack):
        domains.append("concurrency features")
    if domains:
        if "DETECTED DOMAINS" not in text:
            text += f"\nDETECTED DOMAINS: {', '.join(domains)}\n"
    else:
        text += "\nNo specific domains detected\n"
    return text


# --- 3. jarvis_memory -----------------------------------------------------------------


def send_proactive_event(event_type, payload=None):
    """The real agent's proactive-event hook; it is called with a keyword it does not take."""
    return {"event_type": event_type, "payload": payload}


class JarvisMemoryAgent:
    crashes_on_multipart = True

    def __init__(self, data_dir, clock, **_):
        self.path = os.path.join(data_dir, "jarvis_memory_store.json")
        self.memories = load_json(self.path, {})
        self.clock = clock

    def save(self):
        save_json(self.path, self.memories)

    def error(self, message):
        return {"status": "error", "reason": message}

    def handle(self, request):
        action = request.get("action")
        user_id = request.get("user_id", "default")
        if action == "add_memory":
            memory = request.get("memory")
            self.memories.setdefault(user_id, []).append({"timestamp": self.clock.now(), "memory": memory})
            self.save()
            if isinstance(memory, dict) and memory.get("type") == "reminder":
                send_proactive_event(text=memory.get("text"))
            return {"status": "ok"}
        if action == "get_memories":
            return {"status": "ok", "memories": self.memories.get(user_id, [])}
        if action == "clear_memories":
            self.memories[user_id] = []
            self.save()
            return {"status": "ok"}
        return {"status": "error", "reason": "Unknown action"}


# --- serving --------------------------------------------------------------------------

AGENTS = {
    "session_memory": SessionMemoryAgent,
    "contextual_memory": ContextualMemoryAgent,
    "jarvis_memory": JarvisMemoryAgent,
}


def answer(agent, frame):
    try:
        request = json.loads(frame.decode("utf-8"))
        reply = agent.handle(request)
    except Exception as e:  # the real agents answer every failure with str(e)
        reply = agent.error(str(e))
    return json.dumps(reply)


def serve(agent, socket, expiry_interval):
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    next_housekeeping = time.monotonic() + expiry_interval
    while True:
        if hasattr(agent, "housekeeping") and time.monotonic() >= next_housekeeping:
            agent.housekeeping()
            next_housekeeping = time.monotonic() + expiry_interval
        timeout = max(0, int((next_housekeeping - time.monotonic()) * 1000))
        if not poller.poll(timeout):
            continue
        frames = socket.recv_multipart()
        if len(frames) > 1 and agent.crashes_on_multipart:
            print(f"fatal: {len(frames)}-frame request", file=sys.stderr, flush=True)
            os._exit(1)
        # session_memory survives a multipart request: every frame is handled as a request
        # of its own, and only the last one is answered (the first is the one its client
        # is waiting for).
        for frame in frames[:-1]:
            answer(agent, frame)
        socket.send_string(answer(agent, frames[-1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", choices=sorted(AGENTS))
    parser.add_argument("--bind", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--frozen-clock", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--idle-expiry", type=float, default=3600.0)
    parser.add_argument("--expiry-interval", type=float, default=60.0)
    args = parser.parse_args()

    os.makedirs(args.data_dir, exist_ok=True)
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(args.bind)
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    agent = AGENTS[args.agent](
        data_dir=args.data_dir,
        clock=Clock(args.frozen_clock),
        rng=random.Random(args.seed),
        idle_expiry=args.idle_expiry,
        bind=args.bind,
    )
    print(f"READY {endpoint}", flush=True)
    serve(agent, socket, args.expiry_interval)


if __name__ == "__main__":
    main()
