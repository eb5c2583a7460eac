"""The local platform's client (infra.local.rollout.Load) against a real server: answers counted by registry
version, a refused call counted as a failure, over one keep-alive connection."""

from __future__ import annotations

import json
import time
from typing import Any

from cnai.local.server import start_in_thread
from cnai.serving.asgi import FunctionHandler
from infra.local.rollout import Load, wait_for


def test_the_client_counts_answers_by_registry_version_and_every_failure() -> None:
    # Given a server answering version "1", then one 503, then version "2"
    calls = {"n": 0}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 5:
            return {"statusCode": 503, "body": "{}"}
        return {"statusCode": 200, "body": json.dumps({"package_version": "1" if calls["n"] < 5 else "2"})}

    server = start_in_thread(FunctionHandler(handler))
    try:
        started = time.monotonic()
        load = Load(server.url, "toy", ["a", "b"], pause_s=0).start()
        wait_for(lambda: len(load.answers) >= 8, 10, "answers")
        load.finish()
    finally:
        server.stop()
    # Then the answers are counted by version and the refused call is a failure
    answered, failed = load.since(started)
    assert answered["1"] == 4 and answered["2"] >= 3 and failed == 1
    assert "503" in load.failures[0][1]
