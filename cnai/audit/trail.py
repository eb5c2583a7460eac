"""The audit trail: one record per predict call, success or failure, written before the answer leaves.

A record says who asked (IAM principal ARN or API key id from the API Gateway request context), from
where, when, which model version answered, the sha256 of each input (raw text only when a deployment opts
in, and then PII-redacted), what it answered, how long it took and the HTTP status.

Tamper evidence, in two layers: each sink instance chains its records (every record carries the sha256
of the previous one and its own, see `verify_chain`), so an edited or removed record inside a chain is
detected; the deployed pipeline (CloudWatch Logs -> Firehose -> S3 with Object Lock, see
docs/serving-infra.md) makes stored objects immutable for the retention period.

Failure behaviour: fail closed. If the sink cannot take a record, `Auditor.write` writes the record to
stderr (the function's log, which the deployed log pipeline also ships, so it is not lost) marked with
`audit_sink_error`, then raises AuditUnavailableError; the API answers 503 and withholds the prediction. A
prediction is never returned without its audit record having been handed to a sink or to the log.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from cnai.errors import CnaiError
from cnai.identity import groups_of
from cnai.settings import AuditSink, variable

_SINK_VARIABLE = variable(AuditSink, "audit_sink")  # named in the sink errors

SCHEMA_VERSION = 1
GENESIS = "0" * 64


class AuditUnavailableError(CnaiError):
    """The audit sink refused a record: the call must not be answered (fail closed)."""


class Caller(BaseModel):
    """Who asked. kind: iam (principal ARN), api_key (key id), cognito (subject), local, anonymous.

    `groups`: the Cognito groups the caller's token carried (what the handler authorized the call by); empty for
    every other kind, and then left out of the record's JSON so records written before it existed, and their
    chain hashes, stay byte for byte the same."""

    kind: Literal["iam", "api_key", "cognito", "local", "anonymous"]
    id: str | None = None
    account_id: str | None = None
    groups: list[str] = Field(default_factory=list)


class InputDigest(BaseModel):
    sha256: str
    chars: int


class OutputRecord(BaseModel):
    label: str | None
    score: float
    reason: str | None = None


class GenerationAudit(BaseModel):
    """What a generate call produced, without the text: the rendered prompt's and the output's sha256 (the
    inputs list holds each message's), the token counts and why it stopped."""

    prompt_sha256: str
    output_sha256: str
    tokens_in: int
    tokens_out: int
    finish_reason: str


class ChainLink(BaseModel):
    """Position of the record in its sink's hash chain. hash = sha256(prev + canonical record without hash)."""

    id: str
    seq: int
    prev: str
    hash: str = ""


class Action(BaseModel):
    """An operator's action on the registry or the serving alias (`cnai models approve|reject|rollback|promote`):
    what was done to which model version, and why. Predict records leave it out."""

    verb: str
    target: str
    reason: str = ""
    detail: dict[str, str] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    cnai_audit: Literal[True] = True  # the CloudWatch subscription filter matches { $.cnai_audit IS TRUE }
    schema_version: int = SCHEMA_VERSION
    request_id: str
    time: str
    caller: Caller
    source_ip: str | None = None
    user_agent: str | None = None
    method: str = "POST"
    path: str = ""
    model: str | None = None
    model_version: str | None = None
    package_version: str | None = None  # the registry's model package version, once one is registered
    backend: str | None = None
    inputs: list[InputDigest] = Field(default_factory=list)
    texts: list[str] | None = None  # only with CNAI_AUDIT_STORE_TEXT=true, and PII-redacted
    outputs: list[OutputRecord] | None = None
    status: int
    error: str | None = None
    latency_ms: float
    action: Action | None = None  # operator actions only (cnai.deploy.cli)
    generation: GenerationAudit | None = None  # generate calls only (cnai.serving.generate_api)
    chain: ChainLink | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest_inputs(texts: Sequence[str]) -> list[InputDigest]:
    """sha256 of each text's UTF-8 bytes (unpaired surrogates, which a JSON body can smuggle in as
    \\ud800 escapes, are hashed as their surrogate-pass bytes instead of failing the audit)."""
    return [
        InputDigest(sha256=hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest(), chars=len(t)) for t in texts
    ]


def safe_text(value: str | None, limit: int = 512) -> str | None:
    """A caller-controlled string (path, model name, user agent) made storable: bounded and valid UTF-8."""
    if value is None:
        return None
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def caller_from_request_context(context: dict[str, Any] | None) -> tuple[Caller, str | None, str | None]:
    """(caller, source IP, user agent) from an API Gateway REST request context.

    IAM auth fills identity.userArn; an API key fills identity.apiKeyId; a Cognito authorizer fills
    authorizer.claims.sub. The strongest identity present wins.
    """
    context = context if isinstance(context, dict) else {}
    identity = _dict(context.get("identity"))
    authorizer = _dict(context.get("authorizer"))
    account = _str(identity.get("accountId")) or _str(context.get("accountId"))
    ip, agent = _str(identity.get("sourceIp")), _str(identity.get("userAgent"))
    arn = _str(identity.get("userArn"))
    if arn:
        kind: Literal["iam", "api_key", "cognito", "local", "anonymous"] = (
            "local" if arn.startswith("local:") else "iam"
        )
        return Caller(kind=kind, id=arn, account_id=account), ip, agent
    claims = _dict(authorizer.get("claims"))
    if _str(claims.get("sub")):
        caller = Caller(kind="cognito", id=_str(claims.get("sub")), account_id=account, groups=groups_of(claims))
        return caller, ip, agent
    key = _str(identity.get("apiKeyId"))
    if key:
        return Caller(kind="api_key", id=key, account_id=account), ip, agent
    return Caller(kind="anonymous", account_id=account), ip, agent


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def record_from_event(
    event: dict[str, Any], *, request_id: str, status: int, latency_ms: float, **fields: Any
) -> AuditRecord:
    """The audit record of one API Gateway proxy call: identity, source and path from the event (made
    storable: caller-controlled strings are bounded and valid UTF-8), the rest from `fields`."""
    context = event.get("requestContext")
    caller, ip, agent = caller_from_request_context(context if isinstance(context, dict) else None)
    model = fields.pop("model", None)
    return AuditRecord(
        request_id=request_id,
        time=now_iso(),
        caller=caller,
        source_ip=safe_text(ip, 64),
        user_agent=safe_text(agent),
        method=safe_text(str(event.get("httpMethod", "")), 16) or "",
        path=safe_text(str(event.get("path", ""))) or "",
        model=safe_text(model, 200),
        status=status,
        latency_ms=round(latency_ms, 3),
        **fields,
    )


def _dump(record: AuditRecord) -> dict[str, Any]:
    """The record as JSON data; `action`, `generation` and the caller's `groups` only when set, so records written
    before they existed (and records without them) keep the bytes, and the chain hashes, they were written with."""
    data = record.model_dump(mode="json")
    if data.get("action") is None:
        data.pop("action", None)
    if data.get("generation") is None:
        data.pop("generation", None)
    if not data["caller"].get("groups"):
        data["caller"].pop("groups", None)
    return data


def canonical(record: AuditRecord) -> bytes:
    """The bytes the chain hash covers: the record as JSON, keys sorted, without chain.hash."""
    data = _dump(record)
    if data.get("chain"):
        data["chain"]["hash"] = ""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class Sink(Protocol):
    def write(self, line: str, record: AuditRecord) -> None:
        """Persist one record: `line` is its chained JSON, `record` the fields (time, request id) a sink may
        use to place it. Raise on failure, never swallow it."""


class StdoutSink:
    """One JSON line per record on stdout: the Lambda log, shipped by a subscription filter to Firehose -> S3."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def write(self, line: str, record: AuditRecord) -> None:
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()


class FileSink:
    """Appends JSON lines to a local file (`cnai serve`, edge boxes). fsync=True survives power loss too.

    One O_APPEND write(2) per record: whole lines, never interleaved, even with several `cnai serve`
    workers appending to the same file; the descriptor stays open between records.
    """

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None

    def write(self, line: str, record: AuditRecord) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        data = (line + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes; disk full?)")
        if self.fsync:
            os.fsync(self._fd)

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


class S3Sink:
    """One object per record under prefix/dt=YYYY-MM-DD/hour=HH/: Athena partitions by time, filters by caller.

    Encryption: SSE-KMS with `kms_key_id`, else the bucket's default encryption (the infra sets a CMK).
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, kms_key_id: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.kms_key_id = kms_key_id
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def key_for(self, record: AuditRecord) -> str:
        day, clock = record.time[:10], record.time[11:13]
        name = f"{record.time.replace(':', '')}-{record.request_id}.json"
        return "/".join(p for p in (self.prefix, f"dt={day}", f"hour={clock}", name) if p)

    def write(self, line: str, record: AuditRecord) -> None:
        extra: dict[str, str] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key_for(record),
            Body=(line + "\n").encode("utf-8"),
            ContentType="application/json",
            **extra,
        )


def sink_from_uri(uri: str, s3_client: Any = None) -> Sink:
    """`stdout`, `file:PATH` or `s3://bucket/prefix` (the audit sink setting's contract, cnai.settings.AuditSink)."""
    if uri == "stdout":
        return StdoutSink()
    if uri.startswith("file:"):
        path = uri.removeprefix("file:")
        if not path:
            raise CnaiError(f"{_SINK_VARIABLE}: file: needs a path (file:/var/log/cnai/audit.jsonl)")
        return FileSink(path)
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise CnaiError(f"{_SINK_VARIABLE}: s3:// needs a bucket (s3://bucket/prefix)")
        return S3Sink(bucket, prefix, client=s3_client)
    raise CnaiError(f"{_SINK_VARIABLE}: {uri!r} is not one of stdout, file:PATH, s3://bucket/prefix")


class Auditor:
    """Chains and writes records to one sink; fail closed (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        store_text: bool = False,
        redact: Callable[[str], str] | None = None,
        fallback: Any = None,
    ) -> None:
        self.sink = sink
        self.store_text = store_text
        self.redact = redact or default_redactor()
        self.fallback = fallback  # default: sys.stderr at write time (pytest swaps it per test)
        self._lock = threading.Lock()
        self._chain_id = uuid.uuid4().hex
        self._seq = 0
        self._prev = GENESIS

    def texts_for_record(self, texts: Sequence[str]) -> list[str] | None:
        """Nothing unless the deployment opted in; then each text PII-redacted."""
        if not self.store_text:
            return None
        return [safe_text(self.redact(t), 100_000) or "" for t in texts]

    def write(self, record: AuditRecord) -> str:
        """Chain the record and hand it to the sink; returns its chain hash. Raises AuditUnavailableError if
        the sink fails. (Built on one dict rather than model copies: this runs on every request.)"""
        data = _dump(record)
        with self._lock:  # chain order == write order, even from `cnai serve`'s threads
            link = {"id": self._chain_id, "seq": self._seq, "prev": self._prev, "hash": ""}
            data["chain"] = link
            # The same bytes as canonical(): sorted keys, ASCII, chain.hash empty.
            digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")).hexdigest()
            link["hash"] = digest
            # ASCII-escaped: U+2028 or U+0085 inside a text must not split the JSON line for a log reader.
            line = json.dumps(data, separators=(",", ":"))
            try:
                self.sink.write(line, record)
            except Exception as exc:
                self._to_fallback(record, exc)
                raise AuditUnavailableError(
                    f"audit sink {type(self.sink).__name__} failed: {type(exc).__name__}"
                ) from exc
            self._seq += 1
            self._prev = digest
            return digest

    def _to_fallback(self, record: AuditRecord, exc: Exception) -> None:
        """The record goes to the log with the sink's error, so a failing sink loses nothing silently.

        The chain does not advance and the fallback copy carries no link: the chain describes what the
        sink holds, so the next record links to the last one the sink actually took.
        """
        data = record.model_dump(mode="json")
        data["audit_sink_error"] = f"{type(exc).__name__}: {exc}"[:500]
        stream = self.fallback or sys.stderr
        stream.write(json.dumps(data) + "\n")
        stream.flush()


def default_redactor() -> Callable[[str], str]:
    """The ingestion side's PII redaction (cnai.redact), so audit text and curated data redact alike."""
    import importlib

    try:
        redact_module = importlib.import_module("cnai.redact")
    except ImportError:  # pragma: no cover - cnai.redact ships with the package
        return _mask_everything
    function = getattr(redact_module, "redact_text", None) or getattr(redact_module, "redact", None)
    if not callable(function):  # pragma: no cover
        return _mask_everything

    def redact(text: str) -> str:
        result = function(text)
        return result if isinstance(result, str) else str(getattr(result, "text", result))

    return redact


def _mask_everything(text: str) -> str:
    """Without a redactor nothing of the text may be stored: keep only its length."""
    return f"[REDACTED {len(text)} chars]"


def verify_chain(records: Iterable[AuditRecord]) -> list[str]:
    """Problems found in the records' hash chains (empty list: intact). Checks each record's hash and that
    each chain's sequence numbers run without gaps, each linking to its predecessor's hash."""
    problems: list[str] = []
    last: dict[str, ChainLink] = {}
    for record in sorted(
        (r for r in records if r.chain), key=lambda r: (r.chain.id, r.chain.seq) if r.chain else ("", 0)
    ):
        link = record.chain
        assert link is not None
        if hashlib.sha256(canonical(record)).hexdigest() != link.hash:
            problems.append(f"{record.request_id}: hash does not match the record (modified)")
        previous = last.get(link.id)
        if previous is None:
            if link.seq != 0 and link.prev == GENESIS:
                problems.append(f"{record.request_id}: seq {link.seq} claims to start chain {link.id}")
            elif link.seq != 0:  # the head of the chain was cut off (deleted, or expired by retention)
                problems.append(f"chain {link.id}: records 0..{link.seq - 1} are missing")
        elif link.seq != previous.seq + 1:
            problems.append(f"chain {link.id}: records {previous.seq + 1}..{link.seq - 1} are missing")
        elif link.prev != previous.hash:
            problems.append(f"{record.request_id}: does not link to record {previous.seq} (reordered or replaced)")
        last[link.id] = link
    return problems


def read_records(
    source: str | Path,
    caller: str | None = None,
    start: str | None = None,
    end: str | None = None,
    s3_client: Any = None,
) -> Iterator[AuditRecord]:
    """Records from a file sink (file:PATH or a path) or an S3 sink / Firehose output (s3://bucket/prefix),
    filtered by caller id and by time (ISO strings, start inclusive, end exclusive)."""
    since = _instant(start, "start") if start else None
    until = _instant(end, "end") if end else None
    for record in _all_records(str(source), s3_client):
        if caller is not None and record.caller.id != caller:
            continue
        moment = _instant(record.time, f"record {record.request_id} time")
        if since is not None and moment < since:
            continue
        if until is not None and moment >= until:
            continue
        yield record


def _instant(value: str, what: str) -> datetime:
    """ISO 8601 to an aware datetime (naive means UTC): string comparison breaks on differing precision."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CnaiError(f"{what}: {value!r} is not an ISO 8601 time (2026-11-29T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _all_records(source: str, s3_client: Any) -> Iterator[AuditRecord]:
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                if body[:2] == b"\x1f\x8b":  # Firehose GZIP output
                    body = gzip.decompress(body)
                yield from _parse_lines(body.decode("utf-8"), f"s3://{bucket}/{obj['Key']}: ")
        return
    path = Path(source.removeprefix("file:")).expanduser()
    yield from _parse_lines(path.read_text(encoding="utf-8"), f"{path}: ")


class AuditDamageError(CnaiError):
    """A line of an audit store is not a valid audit record: truncated, edited or corrupted."""


def _parse_lines(text: str, where: str = "") -> Iterator[AuditRecord]:
    """JSON lines; a CloudWatch Logs subscription envelope (Firehose without message extraction) is opened.

    A line that does not parse as an audit record is evidence of damage: AuditDamageError names it."""
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): it also splits on U+2028 ...
        try:
            yield from _parse_line(line.strip())
        except (ValueError, ValidationError, RecursionError) as exc:
            problem = str(exc).splitlines()[0][:200]
            raise AuditDamageError(f"{where}line {number}: not a valid audit record ({problem})") from None


def _parse_line(line: str) -> Iterator[AuditRecord]:
    decoder = json.JSONDecoder()
    position = 0
    while position < len(line):  # Firehose may concatenate JSON objects without a newline
        if line[position] != "{":
            raise ValueError(f"unexpected text at character {position}")
        data, position = decoder.raw_decode(line, position)
        while position < len(line) and line[position].isspace():
            position += 1
        if isinstance(data, dict) and isinstance(data.get("logEvents"), list):
            for event in data["logEvents"]:
                message = event.get("message") if isinstance(event, dict) else None
                if isinstance(message, str) and message.lstrip().startswith("{"):  # other log lines: not ours
                    yield from _parse_lines(message)
        elif isinstance(data, dict) and data.get("cnai_audit") is True and "audit_sink_error" not in data:
            yield AuditRecord.model_validate(data)


def new_request_id() -> str:
    return uuid.uuid4().hex
