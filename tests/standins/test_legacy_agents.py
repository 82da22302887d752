"""Tests of the legacy agents' stand-ins (legacy_agents.py) against the revised statements
of specs/legacy-agents.md, each through a real ZeroMQ REQ socket on 127.0.0.1.

Every agent runs as a subprocess on `tcp://127.0.0.1:*` (the port read back from its READY
line) with its own data directory and, unless a test says otherwise, TZ=UTC and a frozen
clock, so replies are compared byte for byte. Every wait has a deadline.

Run: .venv/bin/python -m unittest discover -s tests/standins -p 'test_*.py'
"""

import contextlib
import datetime
import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

import zmq

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy_agents.py")
CTX = zmq.Context.instance()
TIMEOUT = 5.0  # seconds, for a reply, a start or a wait
EPOCH = 1763934484.5  # 2025-11-23T21:48:04.5 UTC
# A frozen clock lies in the past: keep session_memory's cleanup away from it.
FROZEN = ["--frozen-clock", repr(EPOCH), "--idle-expiry", "1e9"]

BOOL = b"{\"status\": \"error\", \"message\": \"'bool' object has no attribute 'get'\"}"
NONE = b"{\"status\": \"error\", \"message\": \"'NoneType' object has no attribute 'get'\"}"
SURROGATE = "'utf-8' codec can't encode character '\\\\ud800' in position 1: surrogates not allowed"


def ts(n, epoch=EPOCH):
    """The frozen clock's n-th reading, as the agents' JSON writes it."""
    return repr(epoch + n / 1000.0)


def iso(n, epoch=EPOCH):
    """The frozen clock's n-th reading as session_memory's local (here UTC) ISO string."""
    utc = datetime.datetime.fromtimestamp(epoch + n / 1000.0, datetime.timezone.utc)
    return utc.replace(tzinfo=None).isoformat()


def wait_until(what, check, timeout=TIMEOUT, every=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Agent:
    """One stand-in process and a REQ socket to it."""

    def __init__(self, test, name, args=(), tz="UTC"):
        self.name = name
        self.args = list(args)
        self.tz = tz
        self.data_dir = test.enterContext(tempfile.TemporaryDirectory())
        self.proc = None
        self.socket = None
        test.addCleanup(self.stop)

    def start(self, args=None):
        """Starts the agent (with `args` instead of the constructor's, if given); returns
        self, or None if the process exited without announcing READY."""
        env = dict(os.environ, TZ=self.tz)
        command = [sys.executable, SCRIPT, self.name, "--bind", "tcp://127.0.0.1:*", "--data-dir", self.data_dir]
        self.proc = subprocess.Popen(
            command + (self.args if args is None else list(args)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            raise AssertionError(f"{self.name} did not start within {TIMEOUT} s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(TIMEOUT)
            return None
        self.assert_ready(line)
        self.socket = CTX.socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
        self.socket.connect(self.endpoint)
        return self

    def assert_ready(self, line):
        match = re.fullmatch(r"READY (tcp://127\.0\.0\.1:\d+)\n", line)
        if match is None:
            raise AssertionError(f"unexpected first line {line!r}")
        self.endpoint = match.group(1)

    def stop(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(TIMEOUT)
            self.proc.stdout.close()
            self.proc = None

    def restart(self, args=None):
        self.stop()
        return self.start(args)

    def send(self, body):
        """One request (a dict, str or bytes; a list of bytes is a multipart request); the
        reply's bytes."""
        if isinstance(body, list):
            self.socket.send_multipart(body)
        else:
            if isinstance(body, dict):
                body = json.dumps(body)
            self.socket.send(body.encode() if isinstance(body, str) else body)
        return self.socket.recv()

    def ask(self, body):
        return json.loads(self.send(body))

    def exited(self):
        return self.proc.poll() is not None

    def path(self, *parts):
        return os.path.join(self.data_dir, *parts)

    def file_text(self, name):
        with open(self.path(name), encoding="utf-8") as f:
            return f.read()

    def file_json(self, name):
        return json.loads(self.file_text(name))

    def db(self, sql, *params):
        with contextlib.closing(sqlite3.connect(self.path("data", "session_memory.db"))) as db:
            return db.execute(sql, params).fetchall()


# --- shared conventions ---------------------------------------------------------------


class SharedConventions(unittest.TestCase):
    def test_stores_are_utf8_unescaped_and_rewritten_in_place(self):
        for name, file, write in [
            ("jarvis_memory", "jarvis_memory_store.json",
             {"action": "add_memory", "user_id": "u", "memory": "Grüße 🎉"}),
            ("contextual_memory", "contextual_memory_store.json",
             {"action": "add_interaction", "session_id": "s", "type": "note", "content": "Grüße 🎉"}),
        ]:
            with self.subTest(name):
                agent = Agent(self, name, FROZEN).start()
                agent.send(write)
                with open(agent.path(file), "rb") as f:
                    raw = f.read()
                self.assertIn('"Grüße 🎉"'.encode("utf-8"), raw)
                self.assertIn(b'\n  "', raw, "indent=2")
                inode = os.stat(agent.path(file)).st_ino
                agent.send(write)
                self.assertEqual(os.stat(agent.path(file)).st_ino, inode, "no temp file renamed over it")
                self.assertEqual(os.listdir(agent.data_dir), [file])

    def test_requests_are_parsed_by_json_loads(self):
        agent = Agent(self, "jarvis_memory", FROZEN).start()
        body = b'{"action": "add_memory", "user_id": "u", "memory": 1, "memory": ' \
               b'[NaN, Infinity, -Infinity, 123456789012345678901234567890, 1e400, "\\ud800"]}'
        agent.send(body)  # the surrogate makes the save fail: tested below
        self.assertEqual(
            agent.send({"action": "get_memories", "user_id": "u"}),
            b'{"status": "ok", "memories": [{"timestamp": %s, "memory": [NaN, Infinity, -Infinity, '
            b'123456789012345678901234567890, Infinity, "\\ud800"]}]}' % ts(1).encode(),
        )

    def test_a_lone_surrogate_stays_in_memory_and_every_later_save_fails_halfway(self):
        cases = [
            ("jarvis_memory", "jarvis_memory_store.json", "reason",
             {"action": "add_memory", "user_id": "u", "memory": "fine"},
             {"action": "add_memory", "user_id": "u", "memory": "\ud800"},
             b'{"status": "ok"}', '"memory": '),
            ("contextual_memory", "contextual_memory_store.json", "message",
             {"action": "add_interaction", "session_id": "s", "type": "note", "content": "fine"},
             {"action": "add_interaction", "session_id": "s", "type": "note", "content": "\ud800"},
             BOOL, '"content": '),
        ]
        for name, file, key, fine, bad, ok, cut_after in cases:
            with self.subTest(name):
                agent = Agent(self, name, FROZEN).start()
                self.assertEqual(agent.send(fine), ok)
                inode = os.stat(agent.path(file)).st_ino
                failure = ('{"status": "error", "%s": "%s"}' % (key, SURROGATE)).encode()
                self.assertEqual(agent.send(bad), failure)
                # Every later save fails the same way, the surrogate being still in memory.
                self.assertEqual(agent.send(fine), failure)
                # The file was truncated and written up to the surrogate, in place.
                text = agent.file_text(file)
                self.assertTrue(text.endswith(cut_after), text[-40:])
                self.assertIn('"fine"', text)
                self.assertEqual(os.stat(agent.path(file)).st_ino, inode)
                with self.assertRaises(json.JSONDecodeError):
                    json.loads(text)
                if name == "jarvis_memory":
                    self.assertEqual(
                        agent.send({"action": "get_memories", "user_id": "u"}),
                        b'{"status": "ok", "memories": [{"timestamp": %s, "memory": "fine"}, '
                        b'{"timestamp": %s, "memory": "\\ud800"}, {"timestamp": %s, "memory": "fine"}]}'
                        % (ts(1).encode(), ts(2).encode(), ts(3).encode()),
                    )
                # The next start cannot read the file.
                self.assertIsNone(agent.restart())
                self.assertNotEqual(agent.proc.returncode, 0)

    def test_a_multipart_request_is_processed_then_kills_jarvis_and_contextual(self):
        cases = [
            ("jarvis_memory", {"action": "add_memory", "user_id": "u", "memory": "kept"},
             lambda a: a.file_json("jarvis_memory_store.json")["u"][0]["memory"] == "kept"),
            ("contextual_memory", {"action": "add_interaction", "session_id": "s", "type": "note", "content": "kept"},
             lambda a: a.file_json("contextual_memory_store.json")["sessions"]["s"][0]["content"] == "kept"),
        ]
        for name, write, saved in cases:
            with self.subTest(name):
                agent = Agent(self, name, FROZEN).start()
                agent.socket.send_multipart([json.dumps(write).encode(), b"{}"])
                wait_until(f"{name} to exit", agent.exited)
                self.assertNotEqual(agent.proc.returncode, 0)
                self.assertTrue(saved(agent))
                agent.socket.setsockopt(zmq.RCVTIMEO, 100)
                with self.assertRaises(zmq.Again):  # and it never answered
                    agent.socket.recv()

    def test_session_memory_answers_the_last_frame_a_second_late_per_extra_frame(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        frames = [
            {"action": "create_session", "session_id": "m", "request_id": "r1"},
            {"action": "add_interaction", "session_id": "m", "role": "user", "content": "hi", "request_id": "r2"},
            {"action": "get_context", "session_id": "m", "request_id": "r3"},
        ]
        started = time.monotonic()
        reply = agent.send([json.dumps(f).encode() for f in frames])
        elapsed = time.monotonic() - started
        self.assertEqual(
            reply,
            b'{"status": "success", "context": [{"role": "user", "content": "hi", "timestamp": "%s"}], '
            b'"request_id": "r3"}' % iso(2).encode(),
        )
        self.assertGreaterEqual(elapsed, 1.9)
        self.assertLess(elapsed, 4.0)
        self.assertFalse(agent.exited())


# --- 1. session_memory ----------------------------------------------------------------


def ok(rid=""):
    return b'{"status": "success", "request_id": "%s"}' % rid.encode()


def failed(rid=""):
    return b'{"status": "error", "request_id": "%s"}' % rid.encode()


def context(*items, rid=""):
    """A get_context reply: items are (role JSON, content JSON, timestamp)."""
    rendered = ", ".join('{"role": %s, "content": %s, "timestamp": "%s"}' % item for item in items)
    return b'{"status": "success", "context": [%s], "request_id": "%s"}' % (rendered.encode(), rid.encode())


UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class SessionMemory(unittest.TestCase):
    def test_metadata_is_stored_as_json_dumps_of_metadata_or_empty(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        values = {"null": None, "empty": "", "zero": 0, "false": False, "list": [], "obj": {"a": "ü"}, "n": 7}
        for name, value in values.items():
            self.assertEqual(agent.send({"action": "create_session", "session_id": name, "metadata": value}),
                             b'{"status": "success", "session_id": "%s", "request_id": ""}' % name.encode())
            self.assertEqual(agent.send({"action": "add_interaction", "session_id": name, "role": "user",
                                         "content": "x", "metadata": value}), ok())
        agent.send({"action": "create_session", "session_id": "absent"})
        agent.send({"action": "add_interaction", "session_id": "absent", "role": "user", "content": "x"})
        expected = {"null": "{}", "empty": "{}", "zero": "{}", "false": "{}", "list": "{}",
                    "obj": '{"a": "\\u00fc"}', "n": "7", "absent": "{}"}
        self.assertEqual(dict(agent.db("SELECT session_id, metadata FROM sessions")), expected)
        self.assertEqual(dict(agent.db("SELECT session_id, metadata FROM interactions")), expected)

    def test_a_falsy_session_id_reuses_the_last_session_touched(self):
        agent = Agent(self, "session_memory", FROZEN + ["--seed", "3"]).start()
        # A fresh agent: a uuid4, which is then the last session touched.
        first = agent.ask({"action": "create_session", "session_id": None})
        self.assertRegex(first["session_id"], UUID4)
        self.assertEqual(agent.send({"action": "create_session", "session_id": False, "request_id": "d"}),
                         b'{"status": "error", "session_id": null, "request_id": "d"}')
        # A session named by any request is touched, whatever the action and its outcome.
        agent.send({"action": "get_context", "session_id": "named"})
        self.assertEqual(agent.send({"action": "create_session", "session_id": ""}),
                         b'{"status": "success", "session_id": "named", "request_id": ""}')
        agent.send({"action": "create_session", "session_id": "other"})
        self.assertEqual(agent.send({"action": "create_session", "session_id": 0}),
                         b'{"status": "error", "session_id": null, "request_id": ""}')
        # Deleted, it is created again.
        agent.send({"action": "delete_session", "session_id": "named"})
        self.assertEqual(agent.send({"action": "create_session", "session_id": None}),
                         b'{"status": "success", "session_id": "named", "request_id": ""}')
        # Absent: always a new uuid4.
        fresh = agent.ask({"action": "create_session"})["session_id"]
        self.assertRegex(fresh, UUID4)
        self.assertNotEqual(fresh, first["session_id"])
        self.assertEqual(
            sorted(r[0] for r in agent.db("SELECT session_id FROM sessions")),
            sorted([first["session_id"], "named", "other", fresh]),
        )

    def test_last_active_moves_only_at_creation_and_at_the_first_load_after_a_restart(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        agent.send({"action": "create_session", "session_id": "s"})
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "one"})
        agent.send({"action": "get_context", "session_id": "s"})
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "two"})
        row = [(iso(1), iso(1))]
        self.assertEqual(agent.db("SELECT created_at, last_active FROM sessions"), row)
        # get_context on an in-memory session reads no clock: "two" got reading 3.
        self.assertEqual(agent.db("SELECT timestamp FROM interactions ORDER BY id"), [(iso(2),), (iso(3),)])

        later = EPOCH + 3600
        agent.restart(["--frozen-clock", repr(later), "--idle-expiry", "1e9"])
        agent.send({"action": "get_context", "session_id": "s"})  # loads it: reading 1
        agent.send({"action": "get_context", "session_id": "s"})
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "three"})
        self.assertEqual(agent.db("SELECT created_at, last_active FROM sessions"), [(iso(1), iso(1, later))])
        self.assertEqual(agent.db("SELECT timestamp FROM interactions WHERE content = 'three'"), [(iso(2, later),)])

        # The first touch after a restart may be an add as well.
        agent.restart(["--frozen-clock", repr(later + 60), "--idle-expiry", "1e9"])
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "four"})
        self.assertEqual(agent.db("SELECT last_active FROM sessions"), [(iso(1, later + 60),)])

    def expire(self, tz):
        """Creates a session on an agent with a 1 s expiry checked every 0.1 s under `tz`,
        then adds to it every 50 ms for at most 2.5 s; returns the seconds from creation to
        the first refused add (None if none was), and the agent."""
        agent = Agent(self, "session_memory", ["--idle-expiry", "1", "--expiry-interval", "0.1"], tz=tz).start()
        started = time.monotonic()
        self.assertEqual(agent.send({"action": "create_session", "session_id": "s"}),
                         b'{"status": "success", "session_id": "s", "request_id": ""}')
        while time.monotonic() - started < 2.5:
            reply = agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "x"})
            if reply != ok():
                self.assertEqual(reply, failed())
                return time.monotonic() - started, agent
            time.sleep(0.05)
        return None, agent

    def local_offset_hours(self, agent):
        """How far the stored last_active is ahead of UTC, in hours."""
        (last_active,), = agent.db("SELECT last_active FROM sessions")
        utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        return (datetime.datetime.fromisoformat(last_active) - utc).total_seconds() / 3600

    def test_under_utc_a_session_is_deleted_the_expiry_after_its_creation_however_active(self):
        elapsed, agent = self.expire("UTC")
        self.assertIsNotNone(elapsed, "adds do not keep a session alive")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 2.0)
        self.assertEqual(agent.send({"action": "get_context", "session_id": "s"}), context())
        self.assertEqual(agent.db("SELECT count(*) FROM interactions"), [(0,)])

    # POSIX TZ strings need no tzdata and have no DST: IST-5:30 is Asia/Kolkata's UTC+5:30,
    # EST5 America/New_York's winter UTC-5.

    def test_east_of_utc_a_session_lives_the_expiry_plus_the_offset(self):
        elapsed, agent = self.expire("IST-5:30")
        self.assertIsNone(elapsed, f"deleted after {elapsed} s")
        self.assertAlmostEqual(self.local_offset_hours(agent), 5.5, delta=0.01)
        self.assertGreater(len(agent.ask({"action": "get_context", "session_id": "s"})["context"]), 10)

    def test_west_of_utc_a_session_is_deleted_at_the_first_cleanup(self):
        elapsed, agent = self.expire("EST5")
        self.assertIsNotNone(elapsed)
        # Under UTC it could not go before 1 s; here the first cleanup, 0.1 s on, takes it.
        self.assertLess(elapsed, 0.8)
        self.assertEqual(agent.db("SELECT count(*) FROM sessions"), [(0,)])

    def test_the_cleanup_runs_at_start_up(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        agent.send({"action": "create_session", "session_id": "old"})
        # A huge expiry keeps a frozen past clock's sessions (a first answer: the start-up
        # cleanup has run)...
        agent.restart(FROZEN)
        agent.send({"action": "health_check"})
        self.assertEqual(agent.db("SELECT session_id FROM sessions"), [("old",)])
        # ...the real hour does not: they are deleted before the first request.
        agent.restart(["--expiry-interval", "60"])
        self.assertEqual(agent.send({"action": "add_interaction", "session_id": "old", "role": "user",
                                     "content": "x"}), failed())
        self.assertEqual(agent.db("SELECT count(*) FROM sessions"), [(0,)])

    def test_past_100_sessions_in_memory_the_oldest_by_last_active_are_deleted(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        for i in range(100):
            agent.send({"action": "create_session", "session_id": f"p{i:02d}"})
        # After a restart only touched sessions are in memory: p99..p50 loaded in that order
        # (so p99 has the oldest last_active), then 51 new ones: 101 in memory.
        later = EPOCH + 60
        agent.restart(["--frozen-clock", repr(later), "--idle-expiry", "1e9", "--expiry-interval", "0.1"])
        for i in range(99, 49, -1):
            agent.send({"action": "get_context", "session_id": f"p{i:02d}"})
        for i in range(51):
            agent.send({"action": "create_session", "session_id": f"n{i:02d}"})
        wait_until("the cap", lambda: agent.db("SELECT count(*) FROM sessions") == [(150,)])
        time.sleep(0.3)  # no poll can show an absence: three more cleanups delete nothing
        ids = {r[0] for r in agent.db("SELECT session_id FROM sessions")}
        self.assertEqual(ids, {f"p{i:02d}" for i in range(99)} | {f"n{i:02d}" for i in range(51)})
        self.assertEqual(agent.send({"action": "add_interaction", "session_id": "p99", "role": "user",
                                     "content": "x"}), failed())

    def test_values_keep_their_json_type_in_memory_and_read_back_as_text_after_a_restart(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        agent.send({"action": "create_session", "session_id": "n"})  # 1
        agent.send({"action": "create_session", "session_id": "t"})  # 2
        self.assertEqual(agent.send({"action": "add_interaction", "session_id": "n", "role": "user",
                                     "content": 5, "request_id": "a"}), ok("a"))  # 3
        self.assertEqual(agent.send({"action": "add_interaction", "session_id": "t", "role": True,
                                     "content": "yes"}), ok())  # 4
        self.assertEqual(agent.send({"action": "get_context", "session_id": "n", "request_id": "g"}),
                         context(rid="g"))
        self.assertEqual(agent.send({"action": "get_context", "session_id": "t"}),
                         context(("true", '"yes"', iso(4))))
        agent.restart()
        self.assertEqual(agent.send({"action": "get_context", "session_id": "n"}),
                         context(('"user"', '"5"', iso(3))))
        self.assertEqual(agent.send({"action": "get_context", "session_id": "t"}),
                         context(('"1"', '"yes"', iso(4))))

    def test_lists_and_objects_cannot_be_bound_and_leave_no_trace(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        self.assertEqual(agent.send({"action": "create_session", "session_id": "s"}),
                         b'{"status": "success", "session_id": "s", "request_id": ""}')  # 1
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "kept"})  # 2
        for bad in ([1], {"a": 1}):
            self.assertEqual(agent.send({"action": "create_session", "session_id": bad, "request_id": "c"}),
                             b'{"status": "error", "session_id": null, "request_id": "c"}')
            self.assertEqual(agent.send({"action": "create_session", "session_id": "u", "user_id": bad}),
                             b'{"status": "error", "session_id": null, "request_id": ""}')
            for field in ("session_id", "content", "role"):
                request = {"action": "add_interaction", "session_id": "s", "role": "user", "content": "c",
                           "request_id": "r"}
                request[field] = bad
                self.assertEqual(agent.send(request), failed("r"), field)
            # The same general rule for clear and delete (the spec names no other reply).
            self.assertEqual(agent.send({"action": "clear_session", "session_id": bad}), failed())
            self.assertEqual(agent.send({"action": "delete_session", "session_id": bad}), failed())
            # get_context answers any internal error with an empty context.
            self.assertEqual(agent.send({"action": "get_context", "session_id": bad}), context())
        self.assertEqual(agent.send({"action": "get_context", "session_id": "s"}),
                         context(('"user"', '"kept"', iso(2))))
        self.assertEqual(agent.db("SELECT session_id FROM sessions"), [("s",)])
        for max_tokens in ("100", None, [1], {}):
            self.assertEqual(agent.send({"action": "get_context", "session_id": "s", "max_tokens": max_tokens}),
                             context(), max_tokens)

    def test_a_restart_reloads_interactions_in_timestamp_order(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        agent.send({"action": "create_session", "session_id": "s"})  # 1
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "first"})  # 2
        earlier = EPOCH - 100
        agent.restart(["--frozen-clock", repr(earlier), "--idle-expiry", "1e9"])
        agent.send({"action": "add_interaction", "session_id": "s", "role": "user", "content": "second"})  # load 1, 2
        in_order = context(('"user"', '"first"', iso(2)), ('"user"', '"second"', iso(2, earlier)))
        self.assertEqual(agent.send({"action": "get_context", "session_id": "s"}), in_order)
        agent.restart()
        self.assertEqual(agent.send({"action": "get_context", "session_id": "s"}),
                         context(('"user"', '"second"', iso(2, earlier)), ('"user"', '"first"', iso(2))))

    def test_a_missing_action_and_a_non_object_request(self):
        agent = Agent(self, "session_memory", FROZEN).start()
        self.assertEqual(agent.send({"request_id": "r"}),
                         b'{"status": "error", "message": "Unknown action: ", "request_id": "r"}')
        self.assertEqual(agent.send(b"[1]"),
                         b"{\"status\": \"error\", \"message\": \"'list' object has no attribute 'get'\"}")
        self.assertEqual(agent.send(b'"x"'),
                         b"{\"status\": \"error\", \"message\": \"'str' object has no attribute 'get'\"}")


# --- 2. contextual_memory -------------------------------------------------------------


def add(agent, session_id, kind, content, **extra):
    request = {"action": "add_interaction", "session_id": session_id, "type": kind, "content": content}
    reply = agent.send({**request, **extra})
    if reply != BOOL:
        raise AssertionError(f"add_interaction answered {reply!r}")


def fill(agent, session_id, count, kind="note"):
    for i in range(count):
        add(agent, session_id, kind, f"{kind} {i}")


# The texts of the summary ContextualMemory.build makes.
CODE = "Code Summary:\nTotal snippets: 1\nTotal lines: 1\n\nConcurrency Features:\n" \
       "- Threading and async operations present\n\nDETECTED DOMAINS: concurrency features\n"
CONVERSATION = "Conversation Summary:\nTotal queries: 48\nTotal responses: 1\n\nRecent Queries:\n" \
               "- q50...\n- q49...\n- q48...\n"


def summary(code, conversation):
    """The reply bytes of that summary, with these texts (JSON-escaped by hand: plain
    ASCII but for the newlines)."""
    def escaped(text):
        return text.replace("\n", "\\n")
    return ('{"last_updated": %s, "code_context": "%s", "conversation_summary": "%s", '
            '"errors_encountered": ["ValueError: bad"], "key_decisions": [{"timestamp": %s, "decision": "k"}]}'
            % (ts(54), escaped(code), escaped(conversation), ts(2))).encode()


def cut(text):
    """get_context's cut with max_tokens 5: (5 // 2) * 4 characters."""
    return text[:8] + "..."


class ContextualMemory(unittest.TestCase):
    def build(self, agent, session_id="c"):
        """A decision, then 51 interactions: the summary of summary() (readings 2 to 54)."""
        self.assertEqual(agent.send({"action": "record_decision", "session_id": session_id, "decision": "k"}), BOOL)
        for i in range(51):
            kind, content = {0: ("code", "import threading"), 1: ("system_response", "ok"),
                             2: ("error", "ValueError: bad")}.get(i, ("user_query", f"q{i}"))
            add(agent, session_id, kind, content)

    def test_a_rebuilt_summary_has_its_keys_in_order(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        self.build(agent)
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c"}), summary(CODE, CONVERSATION))

    def test_metadata_is_kept_only_when_truthy(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        values = [{}, "", 0, None, False, [], {"a": 1}, 5, "x"]
        for value in values:
            add(agent, "s", "note", "c", metadata=value)
        add(agent, "s", "note", "c")
        items = agent.file_json("contextual_memory_store.json")["sessions"]["s"]
        self.assertEqual([i.get("metadata", "-") for i in reversed(items)],
                         ["-", "-", "-", "-", "-", "-", {"a": 1}, 5, "x", "-"])

    def test_health_counts_earlier_health_checks_as_the_only_successes(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()  # started: reading 1

        def health(n, total, successful, failed, checks):
            return (
                '{"status": "ok", "service": "contextual_memory_agent", "timestamp": %s, "uptime_seconds": %r, '
                '"total_requests": %d, "successful_requests": %d, "failed_requests": %d, '
                '"health_check_requests": %d, "bind_address": "tcp://0.0.0.0:5596"}'
                % (ts(n), (EPOCH + n / 1000.0) - (EPOCH + 1 / 1000.0), total, successful, failed, checks)
            ).encode()

        self.assertEqual(agent.send({"action": "health_check"}), health(2, 1, 0, 0, 1))
        self.assertEqual(agent.send({"action": "health_check"}), health(3, 2, 1, 0, 2))
        self.assertEqual(agent.send({"action": "record_decision", "session_id": "d", "decision": "x"}), BOOL)
        self.assertEqual(agent.send({"action": "get_context", "session_id": "d"}),
                         b'{"key_decisions": [{"timestamp": %s, "decision": "x"}]}' % ts(4).encode())
        self.assertEqual(agent.send({"action": "get_context", "session_id": "none"}), NONE)
        self.assertEqual(agent.send({"action": "nope"}), b'{"status": "error", "message": "Unknown action: nope"}')
        self.assertEqual(agent.send({"action": "health_check"}), health(5, 7, 2, 4, 3))

    def test_max_tokens_null_float_and_non_integers(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        self.build(agent)
        full = summary(CODE, CONVERSATION)
        for max_tokens in (None, 1.5, 0.0):
            self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": max_tokens}),
                             full, max_tokens)
        self.assertEqual(agent.send(b'{"action": "get_context", "session_id": "c", "max_tokens": 1e400}'), full)
        self.assertEqual(agent.send(b'{"action": "get_context", "session_id": "c", "max_tokens": NaN}'), full)
        for max_tokens in ("4000", "", [1], {}):
            self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": max_tokens}),
                             NONE, max_tokens)
        # With no text to cut, the summary as it is.
        agent.send({"action": "record_decision", "session_id": "d", "decision": "only"})  # reading 55
        self.assertEqual(agent.send({"action": "get_context", "session_id": "d", "max_tokens": "x"}),
                         b'{"key_decisions": [{"timestamp": %s, "decision": "only"}]}' % ts(55).encode())
        # An int cuts (bools are ints: true is 1, a limit of 0 characters).
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": 5}),
                         summary(cut(CODE), cut(CONVERSATION)))
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": True}),
                         summary("...", "..."))

    def test_splitlines_counts_the_lines(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        fill(agent, "s", 49)
        add(agent, "s", "code", "f\r\ng\x0ch\x1ci\u2029j")
        add(agent, "s", "code", "a\rb\x0bc\x85d\u2028e\n")
        self.assertIn(b'"code_context": "Code Summary:\\nTotal snippets: 2\\nTotal lines: 12\\n\\nNo specific domains',
                      agent.send({"action": "get_context", "session_id": "s"}))
        fill(agent, "e", 50)
        add(agent, "e", "code", "")
        self.assertIn(b'"Code Summary:\\nTotal snippets: 1\\nTotal lines: 0\\n',
                      agent.send({"action": "get_context", "session_id": "e"}))
        fill(agent, "n", 50)
        add(agent, "n", "code", "one\ntwo\n")
        self.assertIn(b'"Code Summary:\\nTotal snippets: 1\\nTotal lines: 2\\n',
                      agent.send({"action": "get_context", "session_id": "n"}))

    def test_a_non_string_code_content_leaves_the_summary_as_it_was(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        agent.send({"action": "record_decision", "session_id": "s", "decision": "k"})  # reading 2
        fill(agent, "s", 50)
        add(agent, "s", "code", 5)
        self.assertEqual(agent.send({"action": "get_context", "session_id": "s"}),
                         b'{"key_decisions": [{"timestamp": %s, "decision": "k"}]}' % ts(2).encode())
        store = agent.file_json("contextual_memory_store.json")
        self.assertEqual(len(store["sessions"]["s"]), 50, "the list is cut all the same")
        self.assertEqual(store["sessions"]["s"][0]["content"], 5)
        add(agent, "s", "code", "x = 1")  # the 5 is among the newest 51 still
        self.assertEqual(agent.ask({"action": "get_context", "session_id": "s"}), store["summaries"]["s"])

    def conversation(self, agent):
        return agent.ask({"action": "get_context", "session_id": "s"})["conversation_summary"]

    def test_a_query_among_the_newest_three_that_is_not_a_string_or_list(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        fill(agent, "s", 50, "user_query")
        for query in (5, None, {"q": 1}, True):
            add(agent, "s", "user_query", query)
            self.assertEqual(self.conversation(agent), "Error summarizing conversation", query)
            add(agent, "s", "user_query", "a")
            add(agent, "s", "user_query", "b")
            self.assertEqual(self.conversation(agent), "Error summarizing conversation", query)
            add(agent, "s", "user_query", "c")  # pushed out of the newest three
            self.assertEqual(
                self.conversation(agent),
                "Conversation Summary:\nTotal queries: 51\nTotal responses: 0\n\n"
                "Recent Queries:\n- c...\n- b...\n- a...\n",
            )
        add(agent, "s", "user_query", [1, "x", None])
        self.assertEqual(
            self.conversation(agent),
            "Conversation Summary:\nTotal queries: 51\nTotal responses: 0\n\n"
            "Recent Queries:\n- [1, 'x', None]...\n- c...\n- b...\n",
        )

    def test_a_non_string_error_content_empties_errors_encountered(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        fill(agent, "s", 48)
        add(agent, "s", "error", "KeyError: " + "k" * 300)
        add(agent, "s", "error", "no match here")
        add(agent, "s", "error", "an Exception")
        self.assertEqual(agent.ask({"action": "get_context", "session_id": "s"})["errors_encountered"],
                         ["an Exception", ("KeyError: " + "k" * 300)[:200]])
        add(agent, "s", "error", ["error"])
        self.assertEqual(agent.ask({"action": "get_context", "session_id": "s"})["errors_encountered"], [])
        fill(agent, "s", 50, "error")  # the list is still the 51st entry of this rebuild
        self.assertEqual(agent.ask({"action": "get_context", "session_id": "s"})["errors_encountered"], [])
        add(agent, "s", "error", "error 50")  # now it is gone
        self.assertEqual(agent.ask({"action": "get_context", "session_id": "s"})["errors_encountered"],
                         [f"error {i}" for i in range(50, -1, -1)])

    def test_the_cut_reaches_the_file_with_the_next_write_to_any_session(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        self.build(agent)
        was_cut = summary(cut(CODE), cut(CONVERSATION))

        def stored():
            return agent.file_json("contextual_memory_store.json")["summaries"]["c"]["code_context"]

        self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": 5}), was_cut)
        self.assertEqual(stored(), CODE, "get_context does not save")
        # A restart before any write brings the full text back.
        agent.restart()
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c"}), summary(CODE, CONVERSATION))
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c", "max_tokens": 5}), was_cut)
        self.assertEqual(agent.send({"action": "record_decision", "session_id": "other", "decision": "x"}), BOOL)
        self.assertEqual(stored(), cut(CODE))
        agent.restart()
        self.assertEqual(agent.send({"action": "get_context", "session_id": "c"}), was_cut)

    def test_none_and_null_and_5_and_string_5_are_different_sessions_until_a_restart(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        requests = [(None, "none"), ("null", "string null"), (5, "five"), ("5", "string five")]
        for session_id, decision in requests:
            self.assertEqual(agent.send({"action": "record_decision", "session_id": session_id, "decision": decision}),
                             BOOL)
        self.assertEqual(agent.send({"action": "record_decision", "decision": "missing"}), BOOL)

        def decisions(request):
            return [d["decision"] for d in agent.ask({"action": "get_context", **request})["key_decisions"]]

        self.assertEqual(decisions({}), ["none", "missing"])
        self.assertEqual(decisions({"session_id": None}), ["none", "missing"])
        self.assertEqual(decisions({"session_id": "null"}), ["string null"])
        self.assertEqual(decisions({"session_id": 5}), ["five"])
        self.assertEqual(decisions({"session_id": "5"}), ["string five"])
        add(agent, None, "note", "a")
        add(agent, "null", "note", "b")
        pairs = json.loads(agent.file_text("contextual_memory_store.json"), object_pairs_hook=lambda p: p)
        summaries = dict(pairs)["summaries"]
        self.assertEqual([k for k, _ in summaries], ["null", "null", "5", "5"])
        self.assertEqual([k for k, _ in dict(pairs)["sessions"]], ["null", "null"])
        # Reloaded, the later of each pair of duplicate keys wins, and 5 is "5".
        agent.restart()
        self.assertEqual(agent.send({"action": "get_context", "session_id": None}), NONE)
        self.assertEqual(decisions({"session_id": "null"}), ["string null"])
        self.assertEqual(agent.send({"action": "get_context", "session_id": 5}), NONE)
        self.assertEqual(decisions({"session_id": "5"}), ["string five"])

    def test_a_list_or_object_session_id_records_nothing(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        for bad in ([1], {"a": 1}):
            self.assertEqual(agent.send({"action": "record_decision", "session_id": bad, "decision": "d"}), BOOL)
        self.assertFalse(os.path.exists(agent.path("contextual_memory_store.json")), "nothing saved")
        agent.send({"action": "record_decision", "session_id": "s", "decision": "d"})
        self.assertEqual(list(agent.file_json("contextual_memory_store.json")["summaries"]), ["s"])

    def test_a_missing_action_is_unknown(self):
        agent = Agent(self, "contextual_memory", FROZEN).start()
        self.assertEqual(agent.send({"session_id": "s"}),
                         b'{"status": "error", "message": "Unknown action: unknown"}')


# --- 3. jarvis_memory -----------------------------------------------------------------


class JarvisMemory(unittest.TestCase):
    def test_a_null_or_number_user_id_is_kept_under_that_value(self):
        agent = Agent(self, "jarvis_memory", FROZEN).start()
        users = [(None, "none"), ("null", "string null"), (5, "five"), ("5", "string five")]
        for user_id, memory in users:  # readings 1 to 4
            self.assertEqual(agent.send({"action": "add_memory", "user_id": user_id, "memory": memory}),
                             b'{"status": "ok"}')
        agent.send({"action": "add_memory", "memory": "missing"})  # reading 5
        for n, (user_id, memory) in enumerate(users, 1):
            self.assertEqual(
                agent.send({"action": "get_memories", "user_id": user_id}),
                b'{"status": "ok", "memories": [{"timestamp": %s, "memory": "%s"}]}'
                % (ts(n).encode(), memory.encode()),
            )
        self.assertEqual(agent.send({"action": "get_memories"}),
                         b'{"status": "ok", "memories": [{"timestamp": %s, "memory": "missing"}]}' % ts(5).encode())
        pairs = json.loads(agent.file_text("jarvis_memory_store.json"), object_pairs_hook=lambda p: p)
        self.assertEqual([k for k, _ in pairs], ["null", "null", "5", "5", "default"])


if __name__ == "__main__":
    unittest.main()
