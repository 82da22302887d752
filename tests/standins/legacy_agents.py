#!/usr/bin/env python3
"""Stand-ins for the three legacy memory agents, faithful to specs/legacy-agents.md.

They are written the way the real agents are: Python classes, pyzmq, a REP socket,
`json.dumps` with its defaults. So the quirks are not imitated but happen for the same
reasons they do in the real services:
- contextual_memory's write "success" reply *is* the AttributeError of calling `.get` on
  the bool its methods return (and its "no summary" reply the same on None);
- an invalid request gets `str(exception)`; replies are ASCII-escaped with Python's
  separators, floats are Python's repr;
- session_memory keeps its sessions in a dict as well as in SQLite, so values keep their
  JSON types until a restart reloads them as SQLite text, and a session's `last_active`
  only moves when the session is created or first loaded into memory;
- session_memory's cleanup compares local-time ISO strings with SQLite's UTC `now`, so the
  expiry moves with the machine's UTC offset (TZ);
- the JSON stores are rewritten in place as UTF-8 (`ensure_ascii=False`): a lone surrogate
  makes every later save fail halfway, leaving a truncated file.

Usage:
    legacy_agents.py AGENT --bind ENDPOINT --data-dir DIR [options]

AGENT is session_memory, contextual_memory or jarvis_memory. The agent prints
`READY <endpoint>` on stdout once bound (a `*` port resolved), then serves until killed.
Storage is the agent's own: DIR/data/session_memory.db (SQLite),
DIR/contextual_memory_store.json, DIR/jarvis_memory_store.json.

A multipart request kills contextual_memory and jarvis_memory after they have processed
its first frame (a write in it is saved); session_memory processes every frame, about 1 s
per extra frame, and answers the last one.

Options for tests:
    --frozen-clock EPOCH   timestamps start at EPOCH and advance 1 ms per reading, so two
                           agents fed the same requests produce the same bytes
    --seed N               seed for the uuid4s session_memory assigns
    --idle-expiry S        session_memory: the "1 hour" of its cleanup, in seconds
                           (default 3600): sessions whose last_active (local time, read
                           as UTC) is more than S seconds before SQLite's UTC now are
                           deleted; fractions of a second count
    --expiry-interval S    session_memory: the cleanup runs at start-up and then every S
                           seconds (default 60)
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
    """Rewrites a store the way the real agents do: in place (truncate, then write) as
    UTF-8 with non-ASCII text unescaped. A string the codec cannot encode (a lone
    surrogate) raises halfway through, and the file is left cut off at that point."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)


def load_json(path, default):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return default


# --- 1. session_memory ----------------------------------------------------------------

MAX_SESSIONS_IN_MEMORY = 100


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
        # The sessions loaded in this process: id (as the request sent it, any JSON type)
        # -> {"created_at", "last_active", "interactions": [{"timestamp", "role",
        # "content"}, ...]}. Values keep their JSON types here; SQLite holds their text.
        self.sessions = {}
        # The last session id a request touched: every truthy session_id a request names
        # (whatever its action, and whether or not it succeeds) and every session created.
        # create_session falls back on it when its session_id is present but falsy.
        self.current_session_id = None

    def error(self, message):
        return {"status": "error", "message": message}

    def new_session_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def handle(self, request):
        action = request.get("action", "")  # a missing action prints as "Unknown action: "
        request_id = request.get("request_id", "")
        session_id = request.get("session_id")
        if session_id:
            self.current_session_id = session_id
        if action == "create_session":
            # Absent: a fresh uuid4. Present but falsy: create_session falls back on the
            # current session (uuid4s are drawn from the seeded rng only when used).
            if "session_id" not in request:
                session_id = self.new_session_id()
            created = self.create_session(session_id, request.get("user_id", "default"), request.get("metadata"))
            if created is None:
                return {"status": "error", "session_id": None, "request_id": request_id}
            return {"status": "success", "session_id": created, "request_id": request_id}
        if action == "add_interaction":
            role = request.get("role")
            content = request.get("content")
            if not session_id or not role or not content:
                return {"status": "error", "message": "Missing required parameters", "request_id": request_id}
            if not self.add_interaction(session_id, role, content, request.get("metadata")):
                return {"status": "error", "request_id": request_id}
            return {"status": "success", "request_id": request_id}
        if action in ("get_context", "clear_session", "delete_session") and not session_id:
            return {"status": "error", "message": "Missing session_id", "request_id": request_id}
        if action == "get_context":
            context = self.get_context(session_id, request.get("max_tokens", 2000))
            return {"status": "success", "context": context, "request_id": request_id}
        if action == "clear_session":
            if not self.clear_session(session_id):
                return {"status": "error", "request_id": request_id}
            return {"status": "success", "request_id": request_id}
        if action == "delete_session":
            if not self.delete_session(session_id):
                return {"status": "error", "request_id": request_id}
            return {"status": "success", "request_id": request_id}
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

    # Like the real agent's, each method catches its own failures (a duplicate id, a list
    # or object SQLite cannot bind, an unhashable id in the dict lookup, a non-string
    # content in get_context) and answers with its failure value: None, False or [].

    def create_session(self, session_id, user_id, metadata):
        session_id = session_id or self.current_session_id or self.new_session_id()
        now = self.clock.local_iso()
        try:
            self.db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (session_id, user_id, now, now, json.dumps(metadata or {})),
            )
            self.db.commit()
        except Exception:
            return None
        self.sessions[session_id] = {"created_at": now, "last_active": now, "interactions": []}
        self.current_session_id = session_id
        return session_id

    def get_session(self, session_id):
        """The in-memory session, loaded from SQLite at its first touch in this process;
        None if there is no such session."""
        if session_id in self.sessions:
            return self.sessions[session_id]
        row = self.db.execute("SELECT created_at FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        # Loading a session is the only touch besides its creation that moves last_active.
        now = self.clock.local_iso()
        self.db.execute("UPDATE sessions SET last_active = ? WHERE session_id = ?", (now, session_id))
        self.db.commit()
        rows = self.db.execute(
            "SELECT timestamp, role, content FROM interactions WHERE session_id = ? ORDER BY timestamp",
            (session_id,),
        )
        interactions = [{"timestamp": t, "role": role, "content": content} for t, role, content in rows]
        session = {"created_at": row[0], "last_active": now, "interactions": interactions}
        self.sessions[session_id] = session
        return session

    def add_interaction(self, session_id, role, content, metadata):
        try:
            session = self.get_session(session_id)
            if session is None:
                return False
            now = self.clock.local_iso()
            # SQLite first: a value it cannot bind leaves no trace in memory either.
            self.db.execute(
                "INSERT INTO interactions (session_id, timestamp, role, content, metadata) VALUES (?, ?, ?, ?, ?)",
                (session_id, now, role, content, json.dumps(metadata or {})),
            )
            self.db.commit()
            session["interactions"].append({"timestamp": now, "role": role, "content": content})
            return True
        except Exception:
            return False

    def get_context(self, session_id, max_tokens):
        try:
            session = self.get_session(session_id)
            if session is None:
                return []
            context = []
            total = 0
            for interaction in reversed(session["interactions"]):
                tokens = len(interaction["content"]) // 4  # raises for a number or a bool
                if total + tokens > max_tokens:  # raises for a non-numeric max_tokens
                    break
                total += tokens
                context.append(
                    {
                        "role": interaction["role"],
                        "content": interaction["content"],
                        "timestamp": interaction["timestamp"],
                    }
                )
            context.reverse()
            return context
        except Exception:
            return []

    def clear_session(self, session_id):
        try:
            self.db.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
            self.db.commit()
            if session_id in self.sessions:
                self.sessions[session_id]["interactions"] = []
            return True
        except Exception:
            return False

    def delete_session(self, session_id):
        try:
            self.db.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            self.db.commit()
            self.sessions.pop(session_id, None)
            return True
        except Exception:
            return False

    def cleanup(self):
        """The real agent's background task. Its SQL is
        `datetime(last_active) < datetime('now', '-1 hour')`: `now` is UTC while last_active
        is local time, so a session lives one hour plus the UTC offset after its creation
        (or its first load after a restart). `datetime()` keeps whole seconds, which is
        nothing next to an hour but would make a test's 1 s expiry anything from 1 to 2 s;
        julianday() compares the same instants to the sub-second."""
        expired = self.db.execute(
            "SELECT session_id FROM sessions WHERE julianday(last_active) < julianday('now', ?)",
            (f"-{self.idle_expiry:f} seconds",),
        ).fetchall()
        for (session_id,) in expired:
            self.delete_session(session_id)
        # Then the cap on the sessions in memory: the oldest go, from the database too.
        if len(self.sessions) > MAX_SESSIONS_IN_MEMORY:
            def age(session_id):
                session = self.sessions[session_id]
                return session["last_active"], session["created_at"]

            for session_id in sorted(self.sessions, key=age)[: len(self.sessions) - MAX_SESSIONS_IN_MEMORY]:
                self.delete_session(session_id)


# --- 2. contextual_memory -------------------------------------------------------------

MAX_INTERACTIONS = 50
# The real agent's __main__ binds this constant, and its health reply names it.
CONTEXTUAL_BIND_ADDRESS = "tcp://0.0.0.0:5596"


class ContextualMemoryAgent:
    crashes_on_multipart = True

    def __init__(self, data_dir, clock, **_):
        self.path = os.path.join(data_dir, "contextual_memory_store.json")
        store = load_json(self.path, {"sessions": {}, "summaries": {}})
        # Keyed by the session id as the request sent it: None (missing or null) and 5 are
        # other keys than "null" and "5" until the file, which writes them so, is reloaded.
        self.sessions = store["sessions"]
        self.summaries = store["summaries"]
        self.clock = clock
        self.started = clock.now()
        self.stats = {"total": 0, "successful": 0, "failed": 0, "health": 0}

    def save(self):
        save_json(self.path, {"sessions": self.sessions, "summaries": self.summaries})

    def error(self, message):
        self.stats["failed"] += 1
        return {"status": "error", "message": message}

    def handle(self, request):
        self.stats["total"] += 1
        try:
            response = self.process_request(request)
            # The agent's bookkeeping expects a reply dict whose status is "ok". Only a
            # health reply is one (counted once built, so it shows the earlier ones); the
            # writes return True/False and get_context a summary or None, so this `.get`
            # raises the 'bool' and 'NoneType' errors that are their replies, and a summary
            # (no status) counts as failed too.
            if response.get("status") == "ok":
                self.stats["successful"] += 1
            else:
                self.stats["failed"] += 1
            return response
        except Exception as e:
            self.stats["failed"] += 1
            return {"status": "error", "message": str(e)}

    def process_request(self, request):
        action = request.get("action", "unknown")
        if action == "add_interaction":
            return self.add_interaction(
                request.get("session_id"), request.get("type"), request.get("content"), request.get("metadata")
            )
        if action == "record_decision":
            return self.record_decision(request.get("session_id"), request.get("decision"))
        if action == "get_context":
            max_tokens = request.get("max_tokens")
            return self.get_context(request.get("session_id"), 2000 if max_tokens is None else max_tokens)
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
                "bind_address": CONTEXTUAL_BIND_ADDRESS,
            }
        return {"status": "error", "message": f"Unknown action: {action}"}

    # The writes catch a failure of the in-memory update (an unhashable session id) and
    # return False, which answers the same 'bool' reply; a failing save is not caught, and
    # its error is the reply.

    def add_interaction(self, session_id, interaction_type, content, metadata):
        try:
            interaction = {"timestamp": self.clock.now(), "type": interaction_type, "content": content}
            if metadata:
                interaction["metadata"] = metadata
            if session_id not in self.sessions:
                self.sessions[session_id] = []
            interactions = self.sessions[session_id]
            interactions.insert(0, interaction)
            if len(interactions) > MAX_INTERACTIONS:
                self.update_summary(session_id, interactions)
                self.sessions[session_id] = interactions[:MAX_INTERACTIONS]
        except Exception:
            return False
        self.save()
        return True

    def record_decision(self, session_id, decision):
        try:
            if session_id not in self.summaries:
                self.summaries[session_id] = {"key_decisions": []}
            self.summaries[session_id]["key_decisions"].append({"timestamp": self.clock.now(), "decision": decision})
        except Exception:
            return False
        self.save()
        return True

    def get_context(self, session_id, max_tokens):
        """The stored summary, its texts cut in memory (not saved: the cut reaches the file
        with the next write to any session); None if there is none, or on any error."""
        try:
            summary = self.summaries.get(session_id)
            if summary is not None:
                for key in ("code_context", "conversation_summary"):
                    if key in summary:
                        summary[key] = truncate(summary[key], max_tokens)
            return summary
        except Exception:
            return None

    def update_summary(self, session_id, interactions):
        """Rebuilds the summary from `interactions` (newest first). A non-string code
        content makes code_summary raise: the summary stays as it was."""
        try:
            previous = self.summaries.get(session_id) or {}
            summary = {"last_updated": self.clock.now()}
            code = [i["content"] for i in interactions if i["type"] == "code"]
            if code:
                summary["code_context"] = code_summary(code)
            conversation = [i for i in interactions if i["type"] in ("user_query", "system_response")]
            if conversation:
                summary["conversation_summary"] = conversation_summary(conversation)
            summary["errors_encountered"] = errors_encountered(interactions)
            summary["key_decisions"] = previous.get("key_decisions", [])
            self.summaries[session_id] = summary
        except Exception:
            pass  # the real agent logs "Error updating summary" and goes on


def truncate(text, max_tokens):
    """get_context's cut. `max_tokens // 2` raises for a string, list or object (get_context
    then answers None: the 'NoneType' reply), but only once there is a text to cut. A float
    (bools are ints) gives a float limit that cannot slice a str: the text stays whole."""
    max_chars = (max_tokens // 2) * 4
    if len(text) <= max_chars:
        return text
    try:
        return text[:max_chars] + "..."
    except TypeError:
        return text


def code_summary(code):
    all_code = "\n\n".join(code)  # raises for a non-string content
    text = f"Code Summary:\nTotal snippets: {len(code)}\nTotal lines: {len(all_code.splitlines())}\n"
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


def conversation_summary(conversation):
    """A query among the newest three that cannot be sliced (a number, object, bool or
    null) turns the whole text into the error text; a list slices, and prints as a list."""
    try:
        queries = [i["content"] for i in conversation if i["type"] == "user_query"]
        responses = [i["content"] for i in conversation if i["type"] == "system_response"]
        text = f"Conversation Summary:\nTotal queries: {len(queries)}\nTotal responses: {len(responses)}\n"
        if queries:
            text += "\nRecent Queries:\n"
            for query in queries[:3]:
                text += f"- {query[:100]}...\n"
        return text
    except Exception:
        return "Error summarizing conversation"


def errors_encountered(interactions):
    """Any non-string error content (no `.lower()`) empties the whole list."""
    try:
        return [
            i["content"][:200]
            for i in interactions
            if i["type"] == "error" and ("error" in i["content"].lower() or "exception" in i["content"].lower())
        ]
    except Exception:
        return []


# --- 3. jarvis_memory -----------------------------------------------------------------


def send_proactive_event(event_type, payload=None):
    """The real agent's proactive-event hook; it is called with a keyword it does not take."""
    return {"event_type": event_type, "payload": payload}


class JarvisMemoryAgent:
    crashes_on_multipart = True

    def __init__(self, data_dir, clock, **_):
        self.path = os.path.join(data_dir, "jarvis_memory_store.json")
        # Keyed by the user id as sent: null and 5 are held under None and 5 (written
        # "null" and "5"); only a missing user_id is "default".
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

# How late session_memory is per extra frame of a multipart request, as measured on the
# real agent (its receive loop seems to wait out a 1 s poll per frame).
MULTIPART_DELAY_PER_FRAME = 1.0


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
    next_cleanup = time.monotonic()  # the first cleanup runs at start-up
    while True:
        if hasattr(agent, "cleanup") and time.monotonic() >= next_cleanup:
            agent.cleanup()
            next_cleanup = time.monotonic() + expiry_interval
        timeout = max(0, int((next_cleanup - time.monotonic()) * 1000))
        if not poller.poll(timeout):
            continue
        frames = socket.recv_multipart()
        if len(frames) > 1 and agent.crashes_on_multipart:
            answer(agent, frames[0])  # processed (a write saved), never answered
            print(f"fatal: {len(frames)}-frame request", file=sys.stderr, flush=True)
            os._exit(1)
        # session_memory survives a multipart request: every frame is handled as a request
        # of its own, and only the last one is answered (the first is the one its client
        # is waiting for), about a second late per extra frame.
        for frame in frames[:-1]:
            answer(agent, frame)
            time.sleep(MULTIPART_DELAY_PER_FRAME)
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
    )
    print(f"READY {endpoint}", flush=True)
    serve(agent, socket, args.expiry_interval)


if __name__ == "__main__":
    main()
