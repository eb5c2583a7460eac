"""`cnai serve` as an HTTP server, against a real running `cnai serve` (one worker) over raw sockets: the defects
of the hand-written stdlib server it replaced (HEAD with a body, chunked bodies read as a second request, no
read timeout, 404 for a wrong method), and the body limits (not UTF-8, over the size limit), each audited."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnai.audit.trail import AuditRecord, read_records
from tests.serving_toy import build_toy_artifact

ROOT = Path(__file__).resolve().parents[2]
PREDICT = "/v1/models/toy/predict"
MAX_BODY = 4096
BODY_TIMEOUT_S = 1.0


@dataclass
class Served:
    host: str
    port: int
    audit: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def records(self) -> list[AuditRecord]:
        return list(read_records(self.audit)) if self.audit.exists() else []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve-http")
    model = build_toy_artifact(root / "model")
    audit = root / "audit.jsonl"
    command = [sys.executable, "-m", "cnai", "serve", "--model-dir", str(model), "--port", "0", "--name", "toy",
               "--audit", f"file:{audit}", "--workers", "1", "--max-body", str(MAX_BODY),
               "--body-timeout", str(BODY_TIMEOUT_S)]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving on http://(127\.0\.0\.1):(\d+)", line)
        assert match, line + process.stdout.read()[-2000:] if process.poll() is not None else line
        yield Served(match.group(1), int(match.group(2)), audit)
    finally:
        process.terminate()
        process.wait(timeout=15)


class Reader:
    """HTTP/1.1 responses read off one connection, exactly as framed (nothing skipped, nothing guessed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed; had {self.buffer[:200]!r}")
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise EOFError("connection closed inside a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def nothing_more(self, wait_s: float = 0.5) -> bool:
        """True when no further byte arrives on the connection within `wait_s` (or it is closed)."""
        self.sock.settimeout(wait_s)
        try:
            return not self.buffer and not self._fill()
        except TimeoutError:
            return not self.buffer
        finally:
            self.sock.settimeout(10)


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    fields = {"Content-Type": "application/json", **(headers or {})}
    if body and "Transfer-Encoding" not in fields:
        fields.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---- a. HEAD ----


def test_head_answers_without_a_body_and_the_connection_stays_in_step(served: Served) -> None:
    # Given one keep-alive connection
    with served.connect() as sock:
        reader = Reader(sock)
        # When HEAD then GET are sent on it, back to back
        sock.sendall(request("HEAD", "/v1/health") + request("GET", "/v1/health"))
        head_status, _, _ = reader.response(head=True)
        # Then the HEAD answer carries no body, so the next bytes on the wire are the GET's own response
        get_status, _, body = reader.response()
        assert head_status == 200 and get_status == 200
        assert json.loads(body)["status"] == "ok"
        assert reader.nothing_more()


# ---- b. chunked ----


def test_a_chunked_request_is_one_request_one_answer_one_audit_record(served: Served) -> None:
    before = len(served.records())
    payload = b'{"inputs": "I lost my card"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:10], payload[10:])) + b"0\r\n\r\n"
    with served.connect() as sock:
        reader = Reader(sock)
        # When a predict body arrives in two chunks
        sock.sendall(request("POST", PREDICT, chunked, {"Transfer-Encoding": "chunked"}))
        status, _, body = reader.response()
        # Then it is read as one request: one answer (the body parsed as JSON), nothing after it
        assert status == 200 and json.loads(body)["predictions"][0]["label"] == "card_lost"
        assert reader.nothing_more()
    # And exactly one audit record
    added = served.records()[before:]
    assert [r.status for r in added] == [200]


# ---- c. read timeout ----


def test_a_client_that_sends_half_a_body_is_cut_off_and_holds_no_worker(served: Served) -> None:
    before = len(served.records())
    with served.connect() as slow:
        # Given a client that announces 200 bytes and sends 20
        slow.sendall(request("POST", PREDICT, b"x" * 20, {"Content-Length": "200"}))
        started = time.monotonic()
        # When another client asks meanwhile, on the only worker
        with served.connect() as other:
            other.sendall(request("POST", PREDICT, b'{"inputs": "refund"}'))
            status, _, _ = Reader(other).response()
            assert status == 200 and time.monotonic() - started < BODY_TIMEOUT_S  # served while the slow one waits
        # Then the slow client gets 408 within a bounded time, and the connection is closed
        status, headers, body = Reader(slow).response()
        waited = time.monotonic() - started
        assert status == 408 and headers.get("connection") == "close"
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert BODY_TIMEOUT_S * 0.8 <= waited < BODY_TIMEOUT_S + 5
        assert slow.recv(1) == b""
    # And both calls are audited, the cut-off one with its status
    assert sorted(r.status for r in served.records()[before:]) == [200, 408]


# ---- d. 405 ----


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", PREDICT, "POST, OPTIONS"), ("DELETE", "/v1/health", "GET, HEAD, OPTIONS"),
     ("POST", "/v1/models", "GET, HEAD, OPTIONS"), ("PUT", "/v1/models/toy", "GET, HEAD, OPTIONS")],
)  # fmt: skip
def test_a_known_route_asked_with_another_method_is_405_with_allow(
    served: Served, method: str, path: str, allow: str
) -> None:
    with served.connect() as sock:
        sock.sendall(request(method, path, b"{}" if method in ("POST", "PUT") else b""))
        status, headers, body = Reader(sock).response()
    assert status == 405 and headers["allow"] == allow
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_an_unknown_route_is_still_404(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(request("DELETE", "/v1/nothing"))
        status, headers, _ = Reader(sock).response()
    assert status == 404 and "allow" not in headers


# ---- bodies: not UTF-8, over the size limit ----


def test_a_body_that_is_not_utf8_is_a_400_naming_the_body_and_audited(served: Served) -> None:
    before = len(served.records())
    with served.connect() as sock:
        sock.sendall(request("POST", PREDICT, b'{"inputs": "caf\xe9"}'))
        status, _, body = Reader(sock).response()
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "invalid_request"
    assert error["fields"][0]["field"] == "body" and "not valid UTF-8" in error["fields"][0]["message"]
    assert [r.status for r in served.records()[before:]] == [400]


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read_and_audited(served: Served) -> None:
    before = len(served.records())
    with served.connect() as sock:
        # Given a Content-Length over the limit, and not one byte of the body sent
        sock.sendall(request("POST", PREDICT, headers={"Content-Length": str(MAX_BODY * 1000)}))
        # Then 413 comes at once, the connection closes (the unread body cannot frame another request)
        status, headers, body = Reader(sock).response()
        assert status == 413 and headers.get("connection") == "close"
        assert json.loads(body)["error"]["fields"][0]["field"] == "body"
    # And the refused call has its audit record
    (record,) = served.records()[before:]
    assert record.status == 413 and record.error == "too_large" and record.model == "toy"


def test_a_chunked_body_growing_over_the_limit_is_413_and_audited(served: Served) -> None:
    before = len(served.records())
    part = b"x" * 1024
    with served.connect() as sock:
        sock.sendall(request("POST", PREDICT, headers={"Transfer-Encoding": "chunked"}))
        for _ in range(MAX_BODY // len(part) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        status, _, _ = Reader(sock).response()
    assert status == 413
    assert [r.status for r in served.records()[before:]] == [413]


def test_the_event_carries_what_api_gateway_would_give_the_function() -> None:
    from cnai.serving.asgi import proxy_event

    # Given a request with a repeated query parameter, a repeated header and a body that is not UTF-8
    headers = [("x-tag", "a"), ("x-tag", "b"), ("user-agent", "curl/8")]
    event = proxy_event("POST", "/v1/models/toy/predict", headers, b"\xff\x00", "192.0.2.7", "local:me@box", "x=1&x=2")
    # Then single and multi-value forms are both there, last value wins in the single form (as in API Gateway)
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["x-tag"] == "b" and event["multiValueHeaders"]["x-tag"] == ["a", "b"]
    # And the identity and source address the audit record reads, and the body base64 encoded
    identity = event["requestContext"]["identity"]
    assert identity["sourceIp"] == "192.0.2.7" and identity["userArn"] == "local:me@box"
    assert identity["userAgent"] == "curl/8"
    assert event["isBase64Encoded"] is True and event["body"] == "/wA="
