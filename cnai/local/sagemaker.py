"""SageMaker endpoints on this machine: moto's SageMaker, extended with what the deploy workflow's endpoint path
calls and moto (5.2.x) lacks. A local-only shim, like cnai.local.stepfunctions; nothing here runs on AWS.

moto has CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint (always InService) and an
InvokeEndpoint that answers canned bodies, but no UpdateEndpoint. While `LocalEndpoints` is active:

1. **UpdateEndpoint** exists (an action on moto's SageMaker response class, state on its backend): the endpoint
   turns `Updating` on the requested configuration; after `settle_after` DescribeEndpoint calls it ends
   `InService`, or `Failed` with a FailureReason when `outcome(endpoint, model)` names one (how a test makes a
   release fail). An update of an endpoint that is still updating is refused as SageMaker refuses it.
2. **InvokeEndpoint** reaches `serve(model, body)`: the Model of the endpoint's current configuration (its
   DescribeModel: image, ModelDataUrl, environment) and the request body; it answers the response body. An
   endpoint that is not InService, or a `serve` that raises, answers SageMaker's errors. `ModelContainer` is
   the `serve` that runs what SageMaker's container runs: the Model's tar and cnai.serving.sagemaker's hooks.

Both are class attributes swapped on `__enter__` and restored on `__exit__`; the module refuses a moto minor
version other than the one these seams were read from (`MOTO_SERIES`). See docs/deploy.md.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote

from cnai.local.stepfunctions import split_s3_uri

MOTO_SERIES: Final = "5.2"
Outcome = Callable[[str, dict[str, Any]], str | None]  # (endpoint, model) -> failure reason, None: succeeds
Serve = Callable[[dict[str, Any], bytes], bytes]  # (model, request body) -> response body


def succeed(endpoint: str, model: dict[str, Any]) -> str | None:
    """The default outcome: every update ends InService."""
    return None


@dataclass
class _Pending:
    config: str
    model: dict[str, Any]
    describes_left: int


class LocalEndpoints:
    """While active, moto's SageMaker has UpdateEndpoint and its runtime's InvokeEndpoint reaches `serve`."""

    def __init__(self, serve: Serve, *, outcome: Outcome = succeed, settle_after: int = 1) -> None:
        import moto

        if ".".join(moto.__version__.split(".")[:2]) != MOTO_SERIES:
            raise RuntimeError(
                f"cnai.local.sagemaker reads moto {MOTO_SERIES}.x's seams; moto {moto.__version__} found"
            )
        if settle_after < 0:
            raise ValueError(f"settle_after {settle_after}: the number of DescribeEndpoint calls, >= 0")
        self.serve, self.outcome, self.settle_after = serve, outcome, settle_after
        self.pending: dict[tuple[str, str, str], _Pending] = {}  # (account, region, endpoint) -> update
        self.updates: list[tuple[str, str]] = []  # (endpoint, configuration), in order: what tests read
        self.lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []

    # -------------------------------------------------------------------------------------------- patches

    def __enter__(self) -> LocalEndpoints:
        from moto.sagemaker.models import SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        shim = self

        def update_endpoint(response: SageMakerResponse) -> Any:
            from moto.core.responses import ActionResult

            backend = response.sagemaker_backend
            arn = shim.update(backend, response._get_param("EndpointName"), response._get_param("EndpointConfigName"))
            return ActionResult({"EndpointArn": arn})

        original_describe = SageMakerModelBackend.describe_endpoint

        def describe_endpoint(backend: SageMakerModelBackend, endpoint_name: str) -> dict[str, Any]:
            shim.settle(backend, endpoint_name)
            return dict(original_describe(backend, endpoint_name))

        def invoke_endpoint(response: SageMakerRuntimeResponse) -> Any:
            from moto.sagemaker.models import sagemaker_backends

            backend = sagemaker_backends[response.current_account][response.region]
            # rest-json: the endpoint is in the path (/endpoints/<name>/invocations), not in the parameters
            name = unquote(response.path.rstrip("/").split("/")[-2])
            return shim.invoke(backend, name, response.body)

        for owner, name, value in (
            (SageMakerResponse, "update_endpoint", update_endpoint),
            (SageMakerModelBackend, "describe_endpoint", describe_endpoint),
            (SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint),
        ):
            self._saved.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, value)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for owner, name, value in reversed(self._saved):
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        self._saved.clear()

    # ---------------------------------------------------------------------------------------- behaviour

    @staticmethod
    def _endpoint(backend: Any, name: str) -> Any:
        from moto.sagemaker.exceptions import ValidationError

        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(message=f'Could not find endpoint "{name}".')
        return endpoint

    def update(self, backend: Any, name: str, config_name: str) -> str:
        """UpdateEndpoint: refused while an update runs or for an unknown configuration, else `Updating`."""
        from moto.sagemaker.exceptions import ValidationError

        endpoint = self._endpoint(backend, name)
        if endpoint.endpoint_status in ("Creating", "Updating", "SystemUpdating", "RollingBack"):
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        if config_name not in backend.endpoint_configs:
            raise ValidationError(message=f'Could not find endpoint configuration "{config_name}".')
        config = backend.describe_endpoint_config(config_name)
        model = backend.describe_model(config["ProductionVariants"][0]["ModelName"]).response_object
        with self.lock:
            endpoint.endpoint_status, endpoint.failure_reason = "Updating", None
            self.pending[(backend.account_id, backend.region_name, name)] = _Pending(
                config_name, dict(model), self.settle_after
            )
            self.updates.append((name, config_name))
            if self.settle_after == 0:
                self._resolve(backend, name)
        return str(endpoint.arn)

    def settle(self, backend: Any, name: str) -> None:
        """One DescribeEndpoint has passed: an update whose time has come ends InService or Failed."""
        with self.lock:
            pending = self.pending.get((backend.account_id, backend.region_name, name))
            if pending is None:
                return
            pending.describes_left -= 1
            if pending.describes_left <= 0:
                self._resolve(backend, name)

    def _resolve(self, backend: Any, name: str) -> None:
        from moto.core.utils import utcnow

        pending = self.pending.pop((backend.account_id, backend.region_name, name))
        endpoint = backend.endpoints[name]
        config = backend.describe_endpoint_config(pending.config)
        endpoint.endpoint_config_name = pending.config
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.last_modified_time = utcnow()
        reason = self.outcome(name, pending.model)
        endpoint.endpoint_status, endpoint.failure_reason = ("Failed", reason) if reason else ("InService", None)

    def invoke(self, backend: Any, name: str, body: bytes | str) -> tuple[int, dict[str, str], str]:
        """InvokeEndpoint on the endpoint's current Model, through `serve`; SageMaker's errors otherwise."""
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            return _error(400, "ValidationError", f"Endpoint {name} of account {backend.account_id} not found.")
        if endpoint.endpoint_status != "InService":
            return _error(400, "ValidationError", f"Endpoint {name} is {endpoint.endpoint_status}, not InService.")
        config = backend.describe_endpoint_config(endpoint.endpoint_config_name)
        model = backend.describe_model(config["ProductionVariants"][0]["ModelName"]).response_object
        raw = body.encode() if isinstance(body, str) else bytes(body or b"")
        try:
            answer = self.serve(dict(model), raw)
        except Exception as exc:  # the container's failure is the caller's ModelError, as SageMaker reports it
            return _error(424, "ModelError", f"Received server error (500) from primary: {exc}"[:1000])
        variant = str(config["ProductionVariants"][0]["VariantName"])
        headers = {"status": "200", "Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": variant}
        return 200, headers, answer.decode()


class ModelContainer:
    """A `serve` that does what SageMaker's container does with a cnai Model: its tar (ModelDataUrl, read from S3,
    i.e. moto or whatever AWS_ENDPOINT_URL names) unpacked, `model_fn` run under the Model's environment (where
    the deploy workflow pins the registry version), then input_fn -> predict_fn -> output_fn per request. One
    loaded service per Model name: a Model is immutable."""

    _env_lock = threading.Lock()  # model_fn reads os.environ, as in the container: one load at a time

    def __init__(self, s3: Any = None, root: Path | None = None) -> None:
        self.s3, self.root = s3, root or Path(tempfile.mkdtemp(prefix="cnai-endpoints-"))
        self.services: dict[str, Any] = {}
        self.lock = threading.Lock()

    def __call__(self, model: dict[str, Any], body: bytes) -> bytes:
        from cnai.serving.sagemaker import JSON, input_fn, output_fn, predict_fn

        service = self.load(model)
        answer, _ = output_fn(predict_fn(input_fn(body, JSON), service), JSON)
        return answer.encode()

    def load(self, model: dict[str, Any]) -> Any:
        from cnai.serving.sagemaker import model_fn

        name, container = str(model["ModelName"]), dict(model["PrimaryContainer"])
        with self.lock:
            if name in self.services:
                return self.services[name]
            bucket, key = split_s3_uri(str(container.get("ModelDataUrl", "")))
            s3 = self.s3
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            directory = self.root / name
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile() as tar_file:
                s3.download_fileobj(bucket, key, tar_file)
                tar_file.seek(0)
                with tarfile.open(fileobj=tar_file, mode="r:gz") as tar:
                    tar.extractall(directory, filter="data")
            env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
            with self._env_lock:
                saved = {k: os.environ.get(k) for k in env}
                os.environ.update(env)
                try:
                    service = model_fn(str(directory))
                finally:
                    for k, v in saved.items():
                        if v is None:
                            os.environ.pop(k, None)
                        else:
                            os.environ[k] = v
            self.services[name] = service
            return service


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    # moto takes the HTTP status of a handler's answer from its headers' "status"
    headers = {"status": str(status), "Content-Type": "application/json", "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"message": message})
