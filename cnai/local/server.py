"""`cnai serve`: the predict Lambda's own handler behind a local HTTP server (laptop, CI, edge box).

Each HTTP request becomes an API Gateway REST proxy event (v1 payload) with a request context that
carries a local identity (`local:<user>@<host>`), and goes through the same `functions.predict.handler`
that runs in Lambda: same validation, same errors, same audit records (to a file by default). Nothing is
re-implemented here, so what works under `cnai serve` works behind API Gateway.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cnai.errors import CnaiError
from cnai.local.context import LocalContext as LocalContext  # re-exported for tests and bench

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit: a bigger body would never reach the handler


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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (load generators do at the end of a run) is not a server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

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
        response = self.server.lambda_handler(event, LocalContext("cnai-predict-local"))
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
    workers: int = 1,
) -> None:
    """Load the model, serve until interrupted (or SIGTERM)."""
    sink = audit_sink or f"file:{Path('.local') / 'audit' / 'audit.jsonl'}"
    serve_forever(lambda: load_handler(str(model), sink, model_name, store_text), host, port, workers, ready)


def serve_forever(
    factory: Callable[[], Handler],
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    ready: Callable[[Server], None] | None = None,
) -> None:
    """Serve with `workers` processes sharing one listening socket (pre-fork, as gunicorn does).

    One process is bounded by the GIL for the Python part of each request; N processes use N cores. The
    parent binds (so port 0 resolves once), then forks; each worker builds its own handler (imports and
    loads the model after the fork: no onnxruntime state crosses a fork) and accepts on the shared socket.
    Each worker's auditor keeps its own hash chain; appends to one audit file are whole lines.
    """
    if workers <= 1:
        server = make_server(factory(), host, port)
        if ready is not None:
            ready(server)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    server = make_server(_not_ready, host, port)
    read_end, write_end = os.pipe()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                os.close(read_end)
                server.lambda_handler = factory()
                os.write(write_end, b"1")
                server.serve_forever(poll_interval=0.2)
            except KeyboardInterrupt:
                pass
            except BaseException:  # the parent sees the exit and stops the others
                code = 1
                traceback.print_exc()
            finally:
                os._exit(code)
        children.append(pid)
    os.close(write_end)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = 0
        while started < workers:
            if not os.read(read_end, 1):
                raise CnaiError("a cnai serve worker failed to start (see its error above)")
            started += 1
        if ready is not None:
            ready(server)
        while children:  # until the workers end or we are told to stop
            pid, _ = os.wait()
            children.remove(pid)
            raise CnaiError(f"cnai serve worker {pid} stopped; stopping the others")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(read_end)
        server.server_close()


def _not_ready(event: dict[str, Any], context: Any) -> dict[str, Any]:  # pragma: no cover - never reached
    raise RuntimeError("handler used before the worker loaded it")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def describe(server: Server, sink: str) -> str:
    return json.dumps({"url": server.url, "audit": sink, "identity": server.identity})
