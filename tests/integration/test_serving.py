"""Serving end to end on a really trained artifact: S3 sources (moto), the predict Lambda with a stdout
audit trail, `cnai serve` over real HTTP on loopback, and SageMaker Serverless hooks + routing."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cnai.audit.trail import Auditor, S3Sink, read_records, verify_chain
from cnai.errors import ArtifactError
from cnai.local.context import LocalContext
from cnai.local.server import start_in_thread
from cnai.model.artifact import pack
from cnai.model.fetch import fetch_artifact
from cnai.model.predictor import Predictor
from cnai.serving.asgi import proxy_event
from cnai.serving.sagemaker import input_fn, model_fn, output_fn, package_model, predict_fn
from tests.serving_toy import import_handler

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "cnai-models-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture(scope="module")
def tarball(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(tiny_artifact, tmp_path_factory.mktemp("tar") / "model.tar.gz")


# ---- sources ----


def test_s3_prefix_artifact_is_fetched_and_verified(s3: Any, tiny_artifact: Path, tmp_path: Path) -> None:
    for path in tiny_artifact.iterdir():
        s3.upload_file(str(path), BUCKET, f"models/intents/v1/{path.name}")
    artifact = fetch_artifact(f"s3://{BUCKET}/models/intents/v1/", cache_dir=tmp_path)
    assert artifact.card.version == json.loads((tiny_artifact / "model_card.json").read_text())["version"]


def test_s3_tarball_pinned_by_version_id(s3: Any, tarball: Path, tiny_artifact: Path, tmp_path: Path) -> None:
    # Given a versioned key holding the good tarball, then overwritten by a corrupt upload
    key = "models/intents/model.tar.gz"
    good = s3.put_object(Bucket=BUCKET, Key=key, Body=tarball.read_bytes())["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=tarball.read_bytes()[:500])
    # When the latest version is asked for, it is refused (partial upload), and nothing is cached
    with pytest.raises(ArtifactError, match=r"model\.tar\.gz"):
        fetch_artifact(f"s3://{BUCKET}/{key}", cache_dir=tmp_path / "latest")
    assert list((tmp_path / "latest").iterdir()) == []
    # Then the pinned version serves
    artifact = fetch_artifact(f"s3://{BUCKET}/{key}", version_id=good, cache_dir=tmp_path / "pinned")
    predictor = Predictor(artifact, threads=1)
    assert predictor.predict(["I lost my card"])[0].top_k


def test_unpinned_tarball_rewritten_in_place_is_fetched_again_not_served_from_cache(
    s3: Any, tiny_artifact: Path, tmp_path: Path
) -> None:
    # Given an unversioned bucket whose key held model A (fetched, so cached), then is overwritten by model B
    import shutil

    s3.create_bucket(Bucket="plain")
    second = tmp_path / "second"
    shutil.copytree(tiny_artifact, second)
    card = json.loads((second / "model_card.json").read_text())
    card["created_at"] = "2031-01-01T00:00:00+00:00"  # not hashed into the payload: still a valid artifact
    (second / "model_card.json").write_text(json.dumps(card))
    key = "training/job/output/model.tar.gz"
    s3.put_object(Bucket="plain", Key=key, Body=pack(tiny_artifact, tmp_path / "a.tar.gz").read_bytes())
    first = fetch_artifact(f"s3://plain/{key}", cache_dir=tmp_path / "cache")
    s3.put_object(Bucket="plain", Key=key, Body=pack(second, tmp_path / "b.tar.gz").read_bytes())
    # When the same URI is fetched again (a new container, a restarted cnai serve)
    again = fetch_artifact(f"s3://plain/{key}", cache_dir=tmp_path / "cache")
    # Then the new object is served, not the cached copy of the old one
    assert first.card.created_at != again.card.created_at
    assert str(again.card.created_at).startswith("2031-01-01")


def test_missing_s3_object_names_the_uri(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=rf"s3://{BUCKET}/nope/model.tar.gz: S3 refused the download \(404"):
        fetch_artifact(f"s3://{BUCKET}/nope/model.tar.gz", cache_dir=tmp_path)


def test_s3_audit_sink_is_queryable_by_caller_and_time(s3: Any) -> None:
    from cnai.audit.trail import AuditRecord, Caller

    auditor = Auditor(S3Sink(BUCKET, "audit", client=s3))
    for i, (who, when) in enumerate([("alice", "2026-11-29T09:59:00.000Z"), ("bob", "2026-11-29T10:01:00.000Z"),
                                     ("alice", "2026-11-29T10:02:00.000Z")]):  # fmt: skip
        auditor.write(
            AuditRecord(request_id=f"r{i}", time=when, caller=Caller(kind="iam", id=who), status=200, latency_ms=1)
        )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="audit/")["Contents"]]
    assert all(k.startswith(("audit/dt=2026-11-29/hour=09/", "audit/dt=2026-11-29/hour=10/")) for k in keys)
    found = list(read_records(f"s3://{BUCKET}/audit/dt=2026-11-29/hour=10/", caller="alice", s3_client=s3))
    assert [r.request_id for r in found] == ["r2"]
    assert verify_chain(read_records(f"s3://{BUCKET}/audit/", s3_client=s3)) == []


# ---- the predict Lambda on the trained model, from S3, auditing to stdout ----


def test_lambda_from_s3_tarball_audits_to_stdout(s3: Any, tarball: Path, tmp_path: Path) -> None:
    # Given the function configured as deployed: model tar in S3 pinned by version, audit on stdout
    key = "models/intents/model.tar.gz"
    version = s3.put_object(Bucket=BUCKET, Key=key, Body=tarball.read_bytes())["VersionId"]
    os.environ["CNAI_MODEL_CACHE"] = str(tmp_path / "cache")
    try:
        api = import_handler(
            {
                "CNAI_MODEL_NAME": "intents",
                "CNAI_MODEL_URI": f"s3://{BUCKET}/{key}",
                "CNAI_MODEL_VERSION_ID": version,
                "CNAI_AUDIT_SINK": "stdout",
            }
        )
    finally:
        os.environ.pop("CNAI_MODEL_CACHE")
    event = json.loads((ROOT / "tests" / "events" / "apigw_rest_predict.json").read_text())
    event["path"] = "/v1/models/intents/predict"
    event["body"] = json.dumps({"inputs": ["I lost my card", "how do I activate my card?"], "top_k": 3})
    # When a call comes in
    out = io.StringIO()
    with redirect_stdout(out):
        response = api.handler(event, LocalContext())
    # Then it is answered by the trained model
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["model"] == "intents" and len(body["predictions"]) == 2
    assert all(len(p["top_k"]) == 3 for p in body["predictions"])
    # And exactly one line on stdout is its audit record, as the subscription filter will select it
    audit = [json.loads(x) for x in out.getvalue().splitlines() if '"cnai_audit":true' in x]
    assert len(audit) == 1
    assert audit[0]["caller"]["id"] == "arn:aws:sts::123456789012:assumed-role/cnai-client/session"
    assert audit[0]["model_version"] == body["version"] and audit[0]["status"] == 200


# ---- `cnai serve` over real HTTP ----


@pytest.fixture
def server(tiny_artifact: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Per test: the library API of the handler module, on uvicorn in a thread (the module holds one API at a
    time, and other tests re-point it)."""
    audit = tmp_path / "audit.jsonl"
    api = import_handler({"CNAI_MODEL_URI": str(tiny_artifact), "CNAI_AUDIT_SINK": f"file:{audit}"})
    running = start_in_thread(api.API, "127.0.0.1", 0)
    yield running.url, audit
    running.stop()


def test_curl_style_predict_over_http(server: tuple[str, Path], tiny_artifact: Path) -> None:
    url, audit = server
    name = json.loads((tiny_artifact / "model_card.json").read_text())["name"]
    # urllib, like `curl -d`, sends application/x-www-form-urlencoded unless told otherwise
    request = urllib.request.Request(f"{url}/v1/models/{name}/predict", data=b'{"inputs":"I lost my card"}')
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        body = json.loads(reply.read())
    assert body["predictions"][0]["top_k"] and body["model"] == name
    (record,) = [r for r in read_records(audit) if r.request_id == body["request_id"]]
    assert record.caller.kind == "local" and record.caller.id and record.caller.id.startswith("local:")
    assert record.source_ip == "127.0.0.1" and record.status == 200


def test_keep_alive_connection_serves_many_requests(server: tuple[str, Path], tiny_artifact: Path) -> None:
    url, _ = server
    name = json.loads((tiny_artifact / "model_card.json").read_text())["name"]
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    statuses = []
    for body in ('{"inputs":["a","b"]}', '{"inputs":7}', '{"inputs":"x"}'):
        connection.request("POST", f"/v1/models/{name}/predict", body, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        reply.read()
        statuses.append(reply.status)
    connection.request("GET", "/v1/models/nope")
    reply = connection.getresponse()
    assert json.loads(reply.read())["error"]["code"] == "unknown_model"
    connection.close()
    assert statuses == [200, 400, 200] and reply.status == 404


@pytest.mark.parametrize("workers", [1, 2])
def test_cnai_serve_command(tiny_artifact: Path, tmp_path: Path, workers: int) -> None:
    # Given `cnai serve` started as a user would, on any free loopback port, with one or two workers
    audit = tmp_path / "audit.jsonl"
    command = [sys.executable, "-m", "cnai", "serve", "--model-dir", str(tiny_artifact), "--port", "0",
               "--audit", f"file:{audit}", "--name", "intents", "--workers", str(workers)]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        # When texts are posted
        ids = []
        for _ in range(4):
            request = urllib.request.Request(f"{match.group(1)}/v1/models/intents/predict", data=b'{"inputs":"hi"}')
            with urllib.request.urlopen(request, timeout=10) as reply:
                body = json.loads(reply.read())
            assert body["model"] == "intents" and body["predictions"][0]["score"] > 0
            ids.append(body["request_id"])
        # Then the audit file holds one record per call, whichever worker answered, and the chains verify
        records = list(read_records(audit))
        assert sorted(r.request_id for r in records) == sorted(ids)
        assert verify_chain(records) == []
    finally:
        process.terminate()
        process.wait(timeout=10)
    # And SIGTERM stops the workers with the parent
    assert process.returncode is not None


# ---- SageMaker Serverless ----


def test_sagemaker_hooks_round_trip(tiny_artifact: Path) -> None:
    service = model_fn(str(tiny_artifact))
    data = input_fn(b'{"inputs": ["I lost my card"], "top_k": 2, "explain": true}', "application/json")
    body, content_type = output_fn(predict_fn(data, service), "application/json")
    answer = json.loads(body)
    assert content_type == "application/json" and len(answer["predictions"][0]["top_k"]) == 2
    assert answer["predictions"][0]["explanation"]["tokens"]
    detail = predict_fn(input_fn('{"describe": true}', "application/json"), service)
    assert detail["labels"] and detail["version"] == answer["version"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [(b"{}", "text/csv", "not supported"), (b"{oops", "application/json", "not valid JSON"),
     (b"[1]", "application/json", "JSON object"), (b'{"inputs": 3}', "application/json", "invalid request"),
     (b"[" * 20000, "application/json", "nested too deeply")],
)  # fmt: skip
def test_sagemaker_bad_requests(tiny_artifact: Path, body: bytes, content_type: str, message: str) -> None:
    from cnai.serving.sagemaker import InferenceError

    service = model_fn(str(tiny_artifact))
    with pytest.raises(InferenceError, match=message):
        predict_fn(input_fn(body, content_type), service)


def test_sagemaker_package_runs_without_the_repository(tiny_artifact: Path, tmp_path: Path) -> None:
    # Given the model.tar.gz built for a SageMaker Model
    tar_path = package_model(tiny_artifact, tmp_path / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "opt-ml-model", filter="data")
    assert {"model.onnx", "model_card.json", "code/inference.py", "code/requirements.txt"} <= names
    assert "code/cnai/serving/sagemaker.py" in names  # the library ships whole, as folders
    # When the container's Python imports code/inference.py with nothing else on its path
    script = (
        "import json, sys; sys.path[:0] = [sys.argv[1] + '/code']; import inference as m; "
        "s = m.model_fn(sys.argv[1]); "
        "print(m.output_fn(m.predict_fn(m.input_fn(b'{\"inputs\": \"I lost my card\"}', 'application/json'), s), "
        "'application/json')[0])"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(tmp_path / "opt-ml-model")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    # Then it answers
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["predictions"][0]["top_k"]
    # And the Lambda can serve the very same tarball (code/ is ignored, the artifact verified)
    assert fetch_artifact(tar_path, cache_dir=tmp_path / "cache").labels


class SageMakerRuntime:
    """Stands in for the sagemaker-runtime client: runs the endpoint's own hooks on the model, in process."""

    def __init__(self, model_dir: Path) -> None:
        self.service = model_fn(str(model_dir))
        self.calls: list[str] = []

    def invoke_endpoint(self, EndpointName: str, ContentType: str, Accept: str, Body: bytes) -> dict[str, Any]:  # noqa: N803
        self.calls.append(EndpointName)
        body, _ = output_fn(predict_fn(input_fn(Body, ContentType), self.service), Accept)
        return {"Body": io.BytesIO(body.encode()), "ContentType": "application/json"}


def test_lambda_routes_a_model_to_its_sagemaker_endpoint(tiny_artifact: Path, tmp_path: Path) -> None:
    # Given a function serving one model locally and routing "big" to a SageMaker endpoint
    api = import_handler(
        {
            "CNAI_MODEL_URI": str(tiny_artifact),
            "CNAI_MODEL_NAME": "small",
            "CNAI_SAGEMAKER_ENDPOINTS": '{"big": "cnai-big-serverless"}',
            "CNAI_AUDIT_SINK": f"file:{tmp_path / 'audit.jsonl'}",
        }
    )
    runtime = SageMakerRuntime(tiny_artifact)
    api.API.service.backends["big"].client = runtime
    # When "big" is asked for a prediction
    event = proxy_event("POST", "/v1/models/big/predict", {"Content-Type": "application/json"},
                        b'{"inputs": ["I lost my card"], "top_k": 2}', "127.0.0.1", "local:test")  # fmt: skip
    response = api.handler(event, LocalContext())
    # Then the endpoint answered it, in the same JSON, and the Lambda audited it
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["model"] == "big" and body["backend"] == "sagemaker" and len(body["predictions"][0]["top_k"]) == 2
    assert runtime.calls == ["cnai-big-serverless", "cnai-big-serverless"]  # predict + describe (once)
    (record,) = read_records(tmp_path / "audit.jsonl")
    assert record.backend == "sagemaker" and record.model == "big" and record.model_version == body["version"]
    models = api.handler(proxy_event("GET", "/v1/models", {}, b"", "127.0.0.1", "local:test"), LocalContext())
    assert {m["name"]: m["backend"] for m in json.loads(models["body"])["models"]} == {
        "big": "sagemaker",
        "small": "local",
    }


def test_failing_sagemaker_endpoint_is_a_502(tiny_artifact: Path, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    class Down:
        def invoke_endpoint(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "ModelError", "Message": "boom /internal"}}, "InvokeEndpoint")

    api = import_handler(
        {"CNAI_SAGEMAKER_ENDPOINTS": '{"big": "ep"}', "CNAI_AUDIT_SINK": f"file:{tmp_path / 'audit.jsonl'}"}
    )
    api.API.service.backends["big"].client = Down()
    event = proxy_event("POST", "/v1/models/big/predict", {}, b'{"inputs": "x"}', "127.0.0.1", "local:test")
    response = api.handler(event, LocalContext())
    assert response["statusCode"] == 502 and "internal" not in response["body"]
    assert [r.status for r in read_records(tmp_path / "audit.jsonl")] == [502]


def test_fallback_load_generator_against_cnai_serve(server: tuple[str, Path], tiny_artifact: Path) -> None:
    """bench/loadgen.py (used where wrk is not installed) drives the server over loopback, bounded in count."""
    from bench.loadgen import run

    url, _ = server
    name = json.loads((tiny_artifact / "model_card.json").read_text())["name"]
    bodies = [json.dumps({"inputs": t}) for t in ("I lost my card", "refund please", "top up")]
    figures = run(url, f"/v1/models/{name}/predict", bodies, connections=2, seconds=5, max_requests=40)
    assert figures["errors"] == 0
    assert 40 <= figures["requests"] <= 41  # bounded by the count (a worker may be mid-request at the limit)
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
