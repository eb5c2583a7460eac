"""`cnai serve`: the predict Lambda's own handler behind a local HTTP server (laptop, CI, edge box).

Each HTTP request becomes an API Gateway REST proxy event (v1 payload) with a request context that
carries a local identity (`local:<user>@<host>`), and goes through the same `functions.predict.handler`
that runs in Lambda: same validation, same errors, same audit records (to a file by default). Nothing is
re-implemented here, so what works under `cnai serve` works behind API Gateway.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cnai.errors import CnaiError

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit: a bigger body would never reach the handler


@dataclass
class LocalContext:
    """The LambdaContext fields the handler and Powertools read."""

    function_name: str = "cnai-predict-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:cnai-predict-local"
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    log_group_name: str = "/aws/lambda/cnai-predict-local"
    log_stream_name: str = "local"
    deadline: float = field(default_factory=lambda: time.monotonic() + 30)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def local_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in some containers
        user = "unknown"
    return f"local:{user}@{socket.gethostname()}"


def proxy_event(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    identity: str,
) -> dict[str, Any]:
    """An API Gateway REST proxy event (resource /{proxy+}), as Lambda receives it."""
    parts = urlsplit(target)
    path = parts.path or "/"
    multi_query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": path,
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": "local",
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                "userArn": identity,
                "caller": identity,
                "user": identity,
                "accountId": "000000000000",
                "apiKeyId": None,
                "accessKey": None,
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def make_server(handler: Handler, host: str = "127.0.0.1", port: int = 8080, identity: str | None = None) -> Server:
    """A threading HTTP/1.1 server (keep-alive) that hands every request to `handler` as a proxy event."""
    return Server((host, port), _RequestHandler, handler, identity or local_identity())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], request_handler: Any, handler: Handler, identity: str) -> None:
        self.lambda_handler = handler
        self.identity = identity
        super().__init__(address, request_handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one TCP connection serves many requests
    # Headers and body leave in two writes; with Nagle on, the second waits for the client's delayed ACK
    # (~40 ms per request on keep-alive connections). TCP_NODELAY sends each write at once.
    disable_nagle_algorithm = True
    server: Server

    def _handle(self) -> None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length else 0
        except ValueError:
            self._reply(400, {"Content-Type": "application/json"}, b'{"error":{"code":"bad_content_length"}}')
            return
        if size > MAX_BODY:
            self._reply(413, {"Content-Type": "application/json"}, b'{"error":{"code":"too_large"}}', close=True)
            return
        body = self.rfile.read(size) if size > 0 else b""
        headers = dict(self.headers.items())
        event = proxy_event(self.command, self.path, headers, body, self.client_address[0], self.server.identity)
        response = self.server.lambda_handler(event, LocalContext())
        payload = response.get("body") or ""
        raw = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode("utf-8")
        out_headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            if values:
                out_headers[str(key)] = str(values[-1])
        self._reply(int(response.get("statusCode", 500)), out_headers, raw)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, close: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("CNAI_SERVE_ACCESS_LOG"):
            super().log_message(format, *args)


def load_handler(
    model: str,
    audit_sink: str,
    model_name: str | None = None,
    store_text: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Handler:
    """Configure the predict function through its real environment contract, then import it.

    The handler reads its settings at import (cold start), exactly as in Lambda, so the environment is set
    first. Metrics go to stdout as EMF only when POWERTOOLS_METRICS_DISABLED is false in the environment;
    onnxruntime uses one thread per request unless CNAI_THREADS says otherwise.
    """
    env = {
        "CNAI_MODEL_URI": str(model),
        "CNAI_AUDIT_SINK": audit_sink,
        "CNAI_AUDIT_STORE_TEXT": "true" if store_text else "false",
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "cnai-serve"),
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        # A server runs requests side by side on its threads (onnxruntime releases the GIL): one intra-op
        # thread per request uses the cores without the oversubscription of N requests x N-thread pools.
        "CNAI_THREADS": os.environ.get("CNAI_THREADS", "1"),
        **(extra_env or {}),
    }
    if model_name:
        env["CNAI_MODEL_NAME"] = model_name
    os.environ.update(env)
    try:
        from functions.predict import handler as module
    except ModuleNotFoundError as exc:  # pragma: no cover - installed without the repo's functions/
        raise CnaiError(f"cnai serve needs the repository's functions/ package on the path ({exc})") from None
    return module.handler


def run(
    model: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    audit_sink: str | None = None,
    model_name: str | None = None,
    store_text: bool = False,
    ready: Callable[[Server], None] | None = None,
) -> None:
    """Load the model, serve until interrupted."""
    sink = audit_sink or f"file:{Path('.local') / 'audit' / 'audit.jsonl'}"
    handler = load_handler(str(model), sink, model_name, store_text)
    server = make_server(handler, host, port)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def describe(server: Server, sink: str) -> str:
    return json.dumps({"url": server.url, "audit": sink, "identity": server.identity})
