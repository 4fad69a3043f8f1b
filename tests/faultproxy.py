"""A test-only HTTP proxy in front of the moto server that injects AWS faults.

Listens on 127.0.0.1 only. For a seeded fraction of requests it answers as AWS does when
throttling (EC2 ``RequestLimitExceeded`` 503, KMS ``ThrottlingException``, STS
``Throttling``), with a 500, or drops the connection without answering (before forwarding,
so the request never reached the emulator). It can also fail every write to one resource
permanently, delay writes, and call a hook after each forwarded write (used to SIGKILL the
client after k writes).

``faults`` answers chosen actions with what a load balancer, an HTML error page or a broken
intermediary sends instead of an AWS response (never forwarded): ``html500`` (the HTML page
moto itself serves for an action it lacks), ``text503`` (an Envoy-style
``upstream connect error`` in ``text/plain``), ``garbage200`` (status 200, a body that is
neither the XML nor the JSON the protocol uses) and ``drop`` (connection closed, no answer).
"""

from __future__ import annotations

import collections
import http.client
import http.server
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

WRITES = ("ModifyImageAttribute", "ModifySnapshotAttribute", "PutKeyPolicy")


def _operation(headers: Any, body: bytes) -> tuple[str, str, dict[str, list[str]]]:
    """The service, the action and (query protocol: EC2, STS) the request's parameters."""
    target = headers.get("X-Amz-Target", "")
    if target:  # JSON protocol (KMS): "TrentService.PutKeyPolicy"
        return "kms", target.rsplit(".", 1)[-1], {}
    params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    action = params.get("Action", [""])[0]
    return ("sts" if action in ("GetCallerIdentity", "AssumeRole") else "ec2"), action, params


def _region(headers: Any) -> str:
    """The Region a SigV4-signed request is for (its credential scope)."""
    auth = headers.get("Authorization", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0] if "Credential=" in auth else ""
    parts = scope.split("/")
    return parts[2] if len(parts) > 2 else ""


def _throttle(service: str) -> tuple[int, str, bytes]:
    if service == "kms":
        return 400, "application/x-amz-json-1.1", (
            b'{"__type":"ThrottlingException","message":"Rate exceeded"}')
    if service == "sts":
        return 400, "text/xml", (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                                 b"<Message>Rate exceeded</Message></Error></ErrorResponse>")
    return 503, "text/xml", (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
                             b"<Message>Request limit exceeded.</Message></Error></Errors>"
                             b"<RequestID>fault</RequestID></Response>")


def _server_error(service: str) -> tuple[int, str, bytes]:
    if service == "kms":
        return 500, "application/x-amz-json-1.1", b'{"__type":"KMSInternalException","message":"x"}'
    if service == "sts":
        return 500, "text/xml", (b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure"
                                 b"</Code><Message>x</Message></Error></ErrorResponse>")
    return 500, "text/xml", (b"<Response><Errors><Error><Code>InternalError</Code><Message>x"
                             b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")


MALFORMED = {
    "html500": (500, "text/html", b"<!doctype html><html><head><title>500 Internal Server "
                                  b"Error</title></head><body><h1>Internal Server Error</h1>"
                                  b"</body></html>"),
    "text503": (503, "text/plain", b"upstream connect error or disconnect/reset before headers. "
                                   b"reset reason: connection termination"),
    "garbage200": (200, "text/plain", b"\x00\x01 this is not a response {]"),
}
FAULT_KINDS = (*MALFORMED, "drop")


def _denied() -> tuple[int, str, bytes]:
    return 403, "text/xml", (b"<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
                             b"<Message>You are not authorized to perform this operation."
                             b"</Message></Error></Errors><RequestID>fault</RequestID></Response>")


class FaultProxy:
    def __init__(self, upstream: str, *, seed: int = 0, throttle: float = 0.0,
                 server_error: float = 0.0, drop: float = 0.0, drop_first: int = 0,
                 fail_resource: str | None = None, write_delay: float = 0.0,
                 latency: float = 0.0,
                 after_write: Callable[[int, str], None] | None = None,
                 faults: dict[str, str] | None = None,
                 admit: Callable[[str, str, str, Mapping[str, list[str]]], bool] | None = None,
                 ) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rng = random.Random(seed)
        self.throttle, self.server_error, self.drop = throttle, server_error, drop
        self.drop_first = drop_first  # drop the first N requests, whatever the dice say
        self.fail_resource = fail_resource
        self.write_delay = write_delay
        self.latency = latency  # added to every forwarded request (network round trip)
        self.after_write = after_write
        self.faults = dict(faults or {})
        # (Region, service, action, parameters) -> False to refuse the request as AWS
        # throttles it (the benchmark's token buckets); called for every request, before the
        # dice.
        self.admit = admit
        self.counts: collections.Counter[str] = collections.Counter()
        self.forwarded: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.writes = 0
        self.enabled = True
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _decide(self, service: str, op: str, body: bytes) -> str:
        with self._lock:
            self.counts["requests"] += 1
            if op in self.faults:
                self.counts["faulted"] += 1
                return self.faults[op]
            if self.fail_resource and op in WRITES and self.fail_resource.encode() in body:
                self.counts["denied"] += 1
                return "deny"
            if not self.enabled:
                return "forward"
            r = self.rng.random()
            if self.counts["requests"] <= self.drop_first or r < self.drop:
                self.counts["dropped"] += 1
                return "drop"
            if r < self.drop + self.throttle:
                self.counts["throttled"] += 1
                return "throttle"
            if r < self.drop + self.throttle + self.server_error:
                self.counts["server_errors"] += 1
                return "error"
            return "forward"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _reply(self, status: int, ctype: str, body: bytes,
                       headers: list[tuple[str, str]] | None = None) -> None:
                self.send_response(status)
                for k, v in headers or [("Content-Type", ctype)]:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                service, op, params = _operation(self.headers, body)
                if proxy.admit is not None and not proxy.admit(_region(self.headers), service, op,
                                                               params):
                    with proxy._lock:
                        proxy.counts["requests"] += 1
                        proxy.counts["throttled"] += 1
                        proxy.refused[op] += 1
                    if proxy.latency:
                        time.sleep(proxy.latency)  # a refusal is a round trip too
                    return self._reply(*_throttle(service))
                decision = proxy._decide(service, op, body)
                if decision in MALFORMED:
                    return self._reply(*MALFORMED[decision])
                if decision == "drop":
                    self.close_connection = True
                    return
                if decision == "throttle":
                    return self._reply(*_throttle(service))
                if decision == "error":
                    return self._reply(*_server_error(service))
                if decision == "deny":
                    return self._reply(*_denied())
                if op in WRITES and proxy.write_delay:
                    time.sleep(proxy.write_delay)
                if proxy.latency:
                    time.sleep(proxy.latency)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy._lock:
                    proxy.forwarded[op] += 1
                    if op in WRITES:
                        proxy.writes += 1
                        n = proxy.writes
                if op in WRITES and proxy.after_write is not None:
                    proxy.after_write(n, op)
                self._reply(resp.status, "", data, resp.getheaders())

        return Handler
