"""HTTP to the predict API: a small ASGI app that turns each request into an API Gateway REST proxy event and
hands it to the library's dispatch, so `cnai serve` answers exactly as the predict Lambda does.

The HTTP protocol itself (parsing, keep-alive, chunked bodies, HEAD, pipelining) is uvicorn's, a maintained
server (cnai.local.server runs it). This adapter adds what API Gateway adds in front of Lambda:

- the event: path, method, headers + multiValueHeaders, queryStringParameters (+ multi), a request context
  with a request id and an identity (`local:<user>@<host>`, the peer's address as sourceIp), the body as
  text, or base64 with isBase64Encoded when it is not UTF-8 (the API then answers a 400 naming `body`);
- a payload limit checked before the body is read (Content-Length) and while it is read (chunked): 413;
- a deadline for the whole body: a client that sends half a body gets 408 and is disconnected, and since the
  body is awaited on the event loop, it never holds the worker: other connections are served meanwhile.

Both refusals go through the API's `refuse`, so a refused predict call still leaves its audit record.
The event handler runs on the event loop, one request at a time per process, like a Lambda environment:
concurrency comes from worker processes (`cnai serve --workers N`), each with its own model and audit chain.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

from cnai.serving.http import error_response

MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit: a bigger body would never reach the handler
BODY_TIMEOUT_S = 10.0  # from the request's headers to the last byte of its body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EventHandler(Protocol):
    """What the adapter serves: cnai.serving.api.PredictApi, or a plain function wrapped in FunctionHandler."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]: ...

    def refuse(
        self,
        event: dict[str, Any],
        status: HTTPStatus,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]: ...


class FunctionHandler:
    """A bare Lambda-style function (event, context) -> response (the benchmark's peer); refusals are answered
    with the API's error body and not audited (such a function has no audit trail)."""

    def __init__(self, function: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        self.function = function

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.function(event, context)

    def refuse(
        self,
        event: dict[str, Any],
        status: HTTPStatus,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        return error_response(status, code, message, _request_id_of(event), fields)


def proxy_event(
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | None,
    source_ip: str,
    identity: str,
    query: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event (resource /{proxy+}), as Lambda receives it. `target` is the path (a
    `?query` suffix is split off unless `query` is given); `body=None` leaves the body out (not read).

    With `query` given, `target` is the decoded path as the server parsed it and is kept whole: a `?` in it
    came from `%3F` inside a path segment (e.g. a model name) and must not cut the path short."""
    path, _, suffix = target.partition("?") if query is None else (target, "", "")
    path = path or "/"
    multi_query = parse_qs(suffix if query is None else query, keep_blank_values=True)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    multi_headers: dict[str, list[str]] = {}
    for key, value in pairs:
        multi_headers.setdefault(key, []).append(value)
    single = {key: values[-1] for key, values in multi_headers.items()}
    text: str | None = None
    encoded = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    request_id = str(uuid.uuid4())
    agent = next((v for k, v in single.items() if k.lower() == "user-agent"), None)
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi_headers,
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
                "userAgent": agent,
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


def _request_id_of(event: Mapping[str, Any]) -> str | None:
    context = event.get("requestContext")
    return context.get("requestId") if isinstance(context, dict) else None


class ProxyApp:
    """ASGI 3 app: HTTP request -> proxy event -> handler -> HTTP response."""

    def __init__(
        self,
        handler: EventHandler,
        identity: str,
        *,
        max_body: int = MAX_BODY,
        body_timeout_s: float = BODY_TIMEOUT_S,
        context: Callable[[], Any] = lambda: None,
    ) -> None:
        self.handler = handler
        self.identity = identity
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self.context = context  # a LambdaContext per request, for handlers (and Powertools) that read one

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served (uvicorn is told ws="none")
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        client = scope.get("client")
        source_ip = client[0] if client else "unknown"

        def event(body: bytes | None) -> dict[str, Any]:
            query = scope.get("query_string", b"").decode("latin-1")
            return proxy_event(scope["method"], scope["path"], headers, body, source_ip, self.identity, query)

        length = _content_length(headers)
        if length is None:
            response = self.handler.refuse(
                event(None), HTTPStatus.BAD_REQUEST, "invalid_request", "Content-Length is not a number",
                [{"field": "Content-Length", "message": "not a non-negative integer"}],
            )  # fmt: skip
            await _send(send, response, close=True)
            return
        if length > self.max_body:  # refused before reading a byte of it
            await _send(send, self._too_large(event(None), length), close=True)
            return
        body, refusal = await self._read_body(receive)
        if refusal == "disconnected":
            return
        if refusal == "too_large":
            await _send(send, self._too_large(event(None), None), close=True)
            return
        if refusal == "timeout":
            message = f"the request body did not arrive within {self.body_timeout_s:g} s"
            response = self.handler.refuse(event(None), HTTPStatus.REQUEST_TIMEOUT, "request_timeout", message)
            await _send(send, response, close=True)
            return
        response = self.handler.handle(event(body), self.context())
        await _send(send, response)

    def _too_large(self, event: dict[str, Any], length: int | None) -> dict[str, Any]:
        size = f"{length} bytes" if length is not None else "more bytes"
        message = f"the request body is {size}, over the limit of {self.max_body} bytes"
        return self.handler.refuse(
            event, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", message, [{"field": "body", "message": message}]
        )

    async def _read_body(self, receive: Receive) -> tuple[bytes, str | None]:
        """(body, None) or (b"", why it was not read: timeout, too_large, disconnected)."""
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                return b"", "timeout"
            if message["type"] == "http.disconnect":
                return b"", "disconnected"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", "too_large"
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    """The declared length (0 when absent, e.g. chunked), or None when it is not a number."""
    for key, value in headers:
        if key.lower() == "content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return 0


async def _send(send: Send, response: Mapping[str, Any], close: bool = False) -> None:
    """The proxy response as HTTP. Framing headers are the server's business, never the handler's."""
    payload = response.get("body") or ""
    raw = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode("utf-8")
    pairs: list[tuple[bytes, bytes]] = []
    multi = response.get("multiValueHeaders") or {}
    for key, value in (response.get("headers") or {}).items():
        if key not in multi:
            pairs.append((str(key).encode("latin-1"), str(value).encode("latin-1")))
    for key, values in multi.items():
        pairs.extend((str(key).encode("latin-1"), str(v).encode("latin-1")) for v in values or ())
    pairs = [p for p in pairs if p[0].lower() not in (b"content-length", b"connection", b"transfer-encoding")]
    pairs.append((b"content-length", str(len(raw)).encode()))
    if close:  # the rest of an unread body is still on the connection: it cannot carry another request
        pairs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": int(response.get("statusCode", 500)), "headers": pairs})
    await send({"type": "http.response.body", "body": raw})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
