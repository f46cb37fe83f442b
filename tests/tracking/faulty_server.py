"""A real HTTP front for an MLflow server whose API can be made to fail while /health still answers.

``python faulty_server.py PORT UPSTREAM FAULT_FILE``: requests are passed to UPSTREAM
(``http://127.0.0.1:5000``, or ``none``) until FAULT_FILE exists; from then on /health
still answers 200 and every API request gets what the file says: ``500`` (an error
answer), ``503`` (unavailable, as while its database restarts) or ``hang`` (no answer at
all), or ``landed-503`` (passed on, then answered 503: the write landed, its answer was
lost, as when the database fails after the commit). Deleting the file heals the server.
``slow-first-create`` passes every request on but holds the first ``runs/create`` for
SLOW_S seconds (one worker's run created late).
"""

from __future__ import annotations

import itertools
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT, UPSTREAM, FAULT_FILE = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
SLOW_S = 3.0
UNAVAILABLE = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database restarting"}'
creates = itertools.count()  # runs/create requests seen (next() is atomic under the GIL)


class Front(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        fault = FAULT_FILE.read_text().strip() if FAULT_FILE.exists() else None
        if self.path.startswith("/health") and (fault or UPSTREAM == "none"):
            self._send(200, b"OK", "text/plain")
        elif fault == "hang":
            time.sleep(3600)
        elif fault == "503":
            self._send(503, UNAVAILABLE)
        elif fault == "landed-503":
            self._pass_on(then_unavailable=True)
        elif fault == "slow-first-create":
            self._pass_on(delay_s=SLOW_S if self._first_create() else 0.0)
        elif fault or UPSTREAM == "none":
            self._send(500, b'{"error_code": "INTERNAL_ERROR", "message": "database is down"}')
        else:
            self._pass_on()

    def _first_create(self) -> bool:
        return self.path.endswith("/runs/create") and next(creates) == 0

    def _pass_on(self, delay_s: float = 0.0, then_unavailable: bool = False) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(
            UPSTREAM + self.path, data=body, headers=headers, method=self.command
        )
        time.sleep(delay_s)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, body, content_type = answer.status, answer.read(), answer.headers.get("Content-Type")
        except urllib.error.HTTPError as err:
            status, body, content_type = err.code, err.read(), err.headers.get("Content-Type")
        if then_unavailable:
            status, body, content_type = 503, UNAVAILABLE, "application/json"
        self._send(status, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str | None = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


ThreadingHTTPServer(("127.0.0.1", PORT), Front).serve_forever()
