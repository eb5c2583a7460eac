"""Amazon Bedrock behind the same Generator interface: the Converse API through boto3, for accounts that
would rather call a hosted model than run the bundled one.

Bedrock does the tokenization, so tokens_in/out are its `usage` counts; time to first token is not known
without streaming and is reported as the whole call. A call's deadline becomes its client's read timeout
(whole seconds, rounded up), with no retry (a retry would run past it); a timeout comes back as finish_reason
"deadline" with no text (Converse has no partial answer). A call without one gets 60 s and botocore's standard
retries. botocore fixes timeouts per client, so a client is kept per timeout, the few most recent only (a
request chooses its deadline, so the set must stay bounded). Clients are created on first use (no AWS call at
import); one passed in (tests use botocore's Stubber) serves every call.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any

from cnai.generate.params import (
    FinishReason,
    Generation,
    GenerationParams,
    GeneratorUnavailableError,
    Messages,
    check_messages,
)
from cnai.model.identity import ModelId

DEFAULT_READ_TIMEOUT_S = 60
KEPT_CLIENTS = 4  # distinct deadlines whose clients are kept (least recently used goes first)
_REASONS: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class BedrockError(GeneratorUnavailableError):
    """Bedrock refused or failed the call; the message carries its error code."""


class BedrockGenerator:
    def __init__(self, model_id: str, client: Any = None) -> None:
        if not model_id:
            raise BedrockError("bedrock: a model id is required (bedrock:<model id>)")
        self.model_id = model_id
        self._client = client
        self._clients: OrderedDict[int | None, Any] = OrderedDict()  # read timeout (s, None: no deadline) -> client
        self._lock = threading.Lock()  # `cnai serve` calls from threads; boto3's default session is not thread-safe
        self._identity = ModelId(model_id.replace(":", "-")[:200], "bedrock")

    @property
    def identity(self) -> ModelId:
        return self._identity

    def _bedrock(self, params: GenerationParams) -> Any:
        """The client for this call's deadline (see the module's docstring)."""
        if self._client is not None:
            return self._client
        timeout = math.ceil(params.deadline_s) if params.deadline_s else None
        with self._lock:  # the lookup, the eviction and the LRU move together: no call finds its client evicted
            client = self._clients.get(timeout)
            if client is None:
                import boto3
                from botocore.config import Config

                if timeout is None:
                    config = Config(read_timeout=DEFAULT_READ_TIMEOUT_S, retries={"mode": "standard"})
                else:
                    config = Config(
                        read_timeout=timeout, connect_timeout=min(timeout, 10), retries={"total_max_attempts": 1}
                    )
                client = boto3.client("bedrock-runtime", config=config)
                self._clients[timeout] = client
                while len(self._clients) > KEPT_CLIENTS:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(timeout)
            return client

    def generate(self, messages: Messages | str, params: GenerationParams | None = None) -> Generation:
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        params = params or GenerationParams()
        checked = check_messages(messages)
        system = [{"text": m["content"]} for m in checked if m["role"] == "system"]
        turns = [{"role": m["role"], "content": [{"text": m["content"]}]} for m in checked if m["role"] != "system"]
        inference: dict[str, Any] = {"maxTokens": params.max_new_tokens, "temperature": params.temperature}
        if params.top_p < 1.0:
            inference["topP"] = params.top_p
        if params.stop:
            inference["stopSequences"] = list(params.stop)
        request: dict[str, Any] = {"modelId": self.model_id, "messages": turns, "inferenceConfig": inference}
        if system:
            request["system"] = system
        started = time.perf_counter()
        try:
            response = self._bedrock(params).converse(**request)
        except ReadTimeoutError:
            total = (time.perf_counter() - started) * 1000.0
            return Generation("", 0, 0, "deadline", total, total)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise BedrockError(f"bedrock {self.model_id}: {error.get('Code')}: {error.get('Message')}") from None
        except BotoCoreError as exc:  # no credentials, no endpoint, connection lost: not a bug of the caller's
            raise BedrockError(f"bedrock {self.model_id}: {exc}") from None
        total = (time.perf_counter() - started) * 1000.0
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(part.get("text", "") for part in content)
        usage = response.get("usage", {})
        reason = _REASONS.get(str(response.get("stopReason")), "stop")
        return Generation(
            text, int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0)), reason, total, total
        )
