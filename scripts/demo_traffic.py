#!/usr/bin/env python3
"""Demo traffic: a burst of realistic voice-assistant memory traffic through the proxies,
then a report of what the proxy saw, read from its /metrics endpoint.

    demo_traffic.py --session EP --contextual EP --jarvis EP --metrics HOST:PORT
"""

import argparse
import json
import random
import re
import urllib.request
from collections import defaultdict

import zmq

UTTERANCES = [
    "What's on my calendar tomorrow?",
    "Play some jazz in the living room",
    "Rappelle-moi d'appeler maman à 18h",
    "Wie wird das Wetter in München?",
    "明日の天気は？",
    "Turn the thermostat down to 19 degrees",
    "Add oat milk to the shopping list 🥛",
    "Who won the match last night?",
]
CODE = [
    "SELECT * FROM reminders WHERE user_id = ?",
    "@app.route('/api/lights', methods=['POST'])\ndef lights(): ...",
    "threading.Thread(target=poll_sensors, daemon=True).start()",
]


class Client:
    def __init__(self, ctx, endpoint):
        self.socket = ctx.socket(zmq.REQ)
        self.socket.setsockopt(zmq.RCVTIMEO, 10000)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.sent = 0

    def call(self, request):
        self.socket.send_string(json.dumps(request))
        self.sent += 1
        return json.loads(self.socket.recv())

    def call_raw(self, frames):
        self.socket.send_multipart(frames)
        self.sent += 1
        return self.socket.recv()


def session_traffic(client, rng):
    for n in range(6):
        sid = client.call({"action": "create_session", "user_id": f"user-{n % 3}", "request_id": f"cs-{n}"})["session_id"]
        for turn in range(rng.randint(8, 30)):
            role = "user" if turn % 2 == 0 else "assistant"
            text = rng.choice(UTTERANCES) if role == "user" else "Sure — done. " * rng.randint(1, 20)
            client.call({"action": "add_interaction", "session_id": sid, "role": role, "content": text,
                         "metadata": {"turn": turn}, "request_id": f"ai-{n}-{turn}"})
            if turn % 5 == 4:
                client.call({"action": "get_context", "session_id": sid, "max_tokens": 200})
        if n == 4:
            client.call({"action": "clear_session", "session_id": sid})
        if n == 5:
            client.call({"action": "delete_session", "session_id": sid})
    client.call({"action": "health_check"})
    client.socket.send(b"this is not JSON")  # answered by the agent itself, forwarded untouched
    client.sent += 1
    client.socket.recv()


def contextual_traffic(client, rng):
    kinds = ["user_query", "system_response", "code", "error"]
    for sid in ("kitchen-display", "car-assistant"):
        for i in range(60):  # past 50: the agent starts building summaries
            kind = kinds[i % 4]
            content = {"code": rng.choice(CODE), "error": "TimeoutError: sensor did not answer"}.get(kind, rng.choice(UTTERANCES))
            client.call({"action": "add_interaction", "session_id": sid, "type": kind, "content": content})
        client.call({"action": "record_decision", "session_id": sid, "decision": "prefer PostgreSQL for reminders"})
        client.call({"action": "get_context", "session_id": sid, "max_tokens": 500})
    client.call({"action": "get_context", "session_id": "never-seen"})
    client.call({"action": "health_check"})


def jarvis_traffic(client, rng):
    for user in ("ana", "bo", "chen", "dário"):
        for i in range(rng.randint(5, 15)):
            memory = {"text": rng.choice(UTTERANCES), "source": "voice"}
            if i % 6 == 5:
                memory = {"type": "reminder", "text": "call mum", "at": "18:00"}
            client.call({"action": "add_memory", "user_id": user, "memory": memory})
        client.call({"action": "get_memories", "user_id": user})
    client.call({"action": "clear_memories", "user_id": "bo"})
    # A two-frame request would kill the jarvis agent: the proxy answers it instead.
    reply = client.call_raw([b'{"action": "get_memories", "user_id": "ana"}', b"stray frame"])
    print(f"  guard answered a 2-frame request to jarvis with: {reply.decode()}")


def report(metrics_addr):
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()
    counts = defaultdict(lambda: defaultdict(float))
    lat_sum, lat_count = defaultdict(float), defaultdict(float)
    added = {}
    for line in text.splitlines():
        m = re.match(r'memshift_requests_total\{(.*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[(labels["agent"], labels["action"], labels["class"])][labels["outcome"]] += float(m.group(2))
        m = re.match(r'memshift_backend_request_duration_seconds_(sum|count)\{(.*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            target = lat_sum if m.group(1) == "sum" else lat_count
            target[(labels["agent"], labels["action"])] += float(m.group(3))
        m = re.match(r'memshift_proxy_added_seconds_(sum|count)\{agent="([^"]*)"\} (\S+)', line)
        if m:
            added.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    print()
    print(f"{'agent':<18} {'action':<16} {'class':<6} {'answered':>8} {'refused':>8} {'timeout':>8} {'legacy mean':>12}")
    for (agent, action, klass), outcomes in sorted(counts.items()):
        total = sum(outcomes.values())
        if total == 0:
            continue
        n = lat_count.get((agent, action), 0)
        mean = f"{lat_sum[(agent, action)] / n * 1000:.2f} ms" if n else "-"
        print(f"{agent:<18} {action:<16} {klass:<6} {outcomes['answered']:>8.0f} {outcomes['refused']:>8.0f} "
              f"{outcomes['timeout']:>8.0f} {mean:>12}")
    print()
    for agent, v in sorted(added.items()):
        if v.get("count"):
            print(f"time memshift added per request ({agent}): mean {v['sum'] / v['count'] * 1e6:.1f} µs over {v['count']:.0f} requests")


def main():
    parser = argparse.ArgumentParser()
    for name in ("session", "contextual", "jarvis", "metrics"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    ctx = zmq.Context()
    rng = random.Random(2026)
    print("sending a burst of traffic through the proxies ...")
    session, contextual, jarvis = Client(ctx, args.session), Client(ctx, args.contextual), Client(ctx, args.jarvis)
    session_traffic(session, rng)
    contextual_traffic(contextual, rng)
    jarvis_traffic(jarvis, rng)
    print(f"  sent {session.sent} session, {contextual.sent} contextual and {jarvis.sent} jarvis requests")
    report(args.metrics)


if __name__ == "__main__":
    main()
