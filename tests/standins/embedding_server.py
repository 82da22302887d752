"""An OpenAI-compatible embeddings endpoint for the tests: POST /v1/embeddings.

It stands in for OpenAI, Ollama, vLLM or TEI. Vectors are deterministic (one bucket per
word, by a stable hash), so semantic search over them ranks by shared words. It can fail
its first N requests (HTTP 503) and can require a bearer token, so the tests can watch the
orchestrator retry and authenticate.

    embedding_server.py --dimension 16 [--fail-first N] [--api-key KEY]
    prints "READY http://127.0.0.1:PORT", then serves until killed
"""

import argparse
import hashlib
import json
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def vector(text, dimension):
    v = [0.0] * dimension
    for word in text.lower().split():
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
        v[h % dimension] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dimension", type=int, required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--api-key")
    args = p.parse_args()
    lock = threading.Lock()
    state = {"calls": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length))
            if self.path != "/v1/embeddings":
                return self.reply(404, {"error": "not found"})
            if args.api_key and self.headers.get("Authorization") != "Bearer " + args.api_key:
                return self.reply(401, {"error": "bad key"})
            with lock:
                state["calls"] += 1
                fail = state["calls"] <= args.fail_first
            if fail:
                return self.reply(503, {"error": "warming up"})
            inputs = request["input"]
            data = [
                {"object": "embedding", "index": i, "embedding": vector(t, args.dimension)}
                for i, t in enumerate(inputs)
            ]
            # Out of order on purpose: clients must use "index".
            data.reverse()
            self.reply(200, {"object": "list", "data": data, "model": request["model"]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
