"""`cnai serve`: the predict API (cnai.serving.api, the very code the Lambda runs) on uvicorn (laptop, CI, edge box).

Each HTTP request becomes an API Gateway REST proxy event (cnai.serving.asgi) with a request context that
carries a local identity (`local:<user>@<host>`), and goes through the same dispatch as in Lambda: same
validation, same errors, same audit records (to a file by default). HTTP itself is uvicorn's (httptools
parser): keep-alive, chunked request bodies, HEAD without a body, idle keep-alive connections closed after
KEEP_ALIVE_S; the adapter bounds the body's size (413) and the time it may take to arrive (408).

Workers: the parent binds the socket (so port 0 resolves once), then forks N workers (pre-fork, as gunicorn
does with uvicorn workers); each loads its own model after the fork (no onnxruntime state crosses a fork),
opens its own audit chain and serves the shared socket with its own event loop, one request at a time.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from cnai.errors import CnaiError
from cnai.local.context import LocalContext as LocalContext  # re-exported for tests and bench
from cnai.serving.asgi import BODY_TIMEOUT_S, MAX_BODY, EventHandler, ProxyApp

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this long (uvicorn's default)
BACKLOG = 256


def local_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in some containers
        user = "unknown"
    return f"local:{user}@{socket.gethostname()}"


@dataclass
class Listening:
    """The bound socket, before or while it is served: what `ready` callbacks are told."""

    sock: socket.socket
    identity: str

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def bind(host: str = "127.0.0.1", port: int = 8080) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the socket says it
    # is TCP. Without it, uvicorn's two writes per response (head, body) wait for the client's delayed ACK:
    # ~40 ms per request on a keep-alive connection. Linux also hands the option down from the listener.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(
    handler: EventHandler, identity: str, *, max_body: int = MAX_BODY, body_timeout_s: float = BODY_TIMEOUT_S
) -> uvicorn.Server:
    """A uvicorn server for one process. proxy_headers off: X-Forwarded-For from a local client must not
    replace the peer address the audit record names."""
    config = uvicorn.Config(
        ProxyApp(
            handler,
            identity,
            max_body=max_body,
            body_timeout_s=body_timeout_s,
            context=lambda: LocalContext("cnai-predict-local"),
        ),
        interface="asgi3",
        http="httptools",
        loop="asyncio",
        ws="none",
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        access_log=bool(os.environ.get("CNAI_SERVE_ACCESS_LOG")),
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=5,
        backlog=BACKLOG,
    )
    return uvicorn.Server(config)


@dataclass
class Background:
    """A server on a thread of this process (tests, benchmarks): `url`, then `stop()`."""

    server: uvicorn.Server
    thread: threading.Thread
    listening: Listening

    @property
    def url(self) -> str:
        return self.listening.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.listening.sock.close()


def start_in_thread(
    handler: EventHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    identity: str | None = None,
    **limits: Any,
) -> Background:
    """Serve `handler` on a daemon thread until stop(); returns once the server accepts connections."""
    listening = Listening(bind(host, port), identity or local_identity())
    server = uvicorn_server(handler, listening.identity, **limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening.sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    if not server.started:
        raise CnaiError("the server thread failed to start")
    return Background(server, thread, listening)


def run(
    model: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    audit_sink: str | None = None,
    model_name: str | None = None,
    store_text: bool = False,
    ready: Callable[[Listening], None] | None = None,
    workers: int = 1,
    max_body: int = MAX_BODY,
    body_timeout_s: float = BODY_TIMEOUT_S,
    **options: Any,
) -> None:
    """Load the model (in each worker), serve until interrupted (or SIGTERM). `options`: more ServingOptions
    fields (cache_size, threads, max_inputs, max_input_chars, model_package_version)."""
    from cnai.serving.api import ServingOptions, build_api

    serving = ServingOptions(
        model_uri=str(model),
        model_name=model_name or "",
        audit_sink=audit_sink or f"file:{Path('.local') / 'audit' / 'audit.jsonl'}",
        audit_store_text=store_text,
        **options,
    )
    serve_forever(
        lambda: build_api(serving), host, port, workers, ready, max_body=max_body, body_timeout_s=body_timeout_s
    )


def serve_forever(
    factory: Callable[[], EventHandler],
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    ready: Callable[[Listening], None] | None = None,
    *,
    max_body: int = MAX_BODY,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> None:
    """Serve what `factory` builds with `workers` processes sharing one listening socket (pre-fork).

    One process serves one request at a time (the GIL bounds the Python part anyway); N processes use N
    cores. Each worker's auditor keeps its own hash chain; appends to one audit file are whole lines.
    """
    listening = Listening(bind(host, port), local_identity())
    if workers <= 1:
        server = uvicorn_server(factory(), listening.identity, max_body=max_body, body_timeout_s=body_timeout_s)
        if ready is not None:
            ready(listening)
        try:
            server.run(sockets=[listening.sock])  # uvicorn stops on SIGINT / SIGTERM
        finally:
            listening.sock.close()
        return
    read_end, write_end = os.pipe()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                os.close(read_end)
                server = uvicorn_server(factory(), listening.identity, max_body=max_body, body_timeout_s=body_timeout_s)
                os.write(write_end, b"1")
                server.run(sockets=[listening.sock])
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
            ready(listening)
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
        listening.sock.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def describe(listening: Listening, sink: str) -> str:
    return json.dumps({"url": listening.url, "audit": sink, "identity": listening.identity})
