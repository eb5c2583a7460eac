"""A LambdaContext for running our handlers outside Lambda (`cnai serve`, the local event source mapping,
benchmarks, tests): the fields the handlers and Powertools read, with a real remaining-time clock."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LocalContext:
    function_name: str = "cnai-local"
    timeout_s: float = 30.0
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1769  # one full vCPU on Lambda
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))
