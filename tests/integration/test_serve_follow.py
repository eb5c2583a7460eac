"""`cnai serve --follow` while the alias moves: a client hammering over one keep-alive connection sees no failed
or dropped request, and both versions answer, first in the server's own thread (precise counts), then through
the command itself with two workers against a moto server (each worker follows the alias on its own)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from moto import mock_aws
from moto.server import ThreadedMotoServer

from cnai.local.alias import AliasFollower, AliasRef
from cnai.local.server import start_in_thread
from cnai.serving.api import ServingOptions
from tests.unit.local.alias_world import FUNCTION, MODEL, make_world

ROOT = Path(__file__).resolve().parents[2]
BODY = json.dumps({"inputs": ["i lost my card", "refund please"]})


@dataclass
class Hammer:
    """One client thread posting predictions back to back over a single keep-alive connection."""

    host: str
    port: int
    answers: list[str] = field(default_factory=list)  # the registry version of each answer, in order
    failures: list[str] = field(default_factory=list)
    connects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        hammer = self

        class Counting(http.client.HTTPConnection):
            def connect(self) -> None:
                hammer.connects += 1
                super().connect()

        connection = Counting(self.host, self.port, timeout=30)
        while not self.stop.is_set():
            try:
                connection.request("POST", f"/v1/models/{MODEL}/predict", BODY, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                if response.status != 200:
                    self.failures.append(f"{response.status}: {data[:200]!r}")
                else:
                    self.answers.append(json.loads(data)["package_version"])
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                connection.close()

    def until(self, condition: Callable[[], bool], timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out; answers so far {Counter(self.answers)}, {self.failures}"
            time.sleep(0.02)


@contextmanager
def hammering(host: str, port: int) -> Iterator[Hammer]:
    hammer = Hammer(host, port)
    thread = threading.Thread(target=hammer.run, daemon=True)
    thread.start()
    try:
        yield hammer
    finally:
        hammer.stop.set()
        thread.join(timeout=30)


def fresh_answer(host: str, port: int) -> str:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", f"/v1/models/{MODEL}/predict", BODY, {"Content-Type": "application/json"})
        return str(json.loads(connection.getresponse().read())["package_version"])
    finally:
        connection.close()


def last(hammer: Hammer, n: int) -> list[str]:
    return hammer.answers[-n:] if len(hammer.answers) >= n else []


def test_no_request_fails_while_the_alias_goes_canary_then_full(fake_aws_env: None, tmp_path: Path) -> None:
    with mock_aws():
        # Given the alias on registry version 1 and a server following it every 50 ms
        world = make_world(tmp_path / "artifacts")
        one, two = world.publish("1"), world.publish("2")
        world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
        audit = tmp_path / "audit.jsonl"
        options = ServingOptions(audit_sink=f"file:{audit}")
        follower = AliasFollower(
            AliasRef(FUNCTION), options, lambda_client=world.lambda_, interval_s=0.05, report=lambda line: None
        ).start()
        server = start_in_thread(follower)
        try:
            host, port = server.listening.sock.getsockname()[:2]
            with hammering(host, port) as hammer:
                hammer.until(lambda: len(hammer.answers) >= 20)
                # When the deploy workflow gives version 2 a 50% canary, then all the traffic
                world.route(one, two, 0.5)
                hammer.until(lambda: hammer.answers.count("2") >= 20)
                world.route(two)
                hammer.until(lambda: last(hammer, 20) == ["2"] * 20)
        finally:
            server.stop()
            follower.close()
    # Then nothing failed or was dropped, on one connection, and both versions answered
    assert hammer.failures == []
    assert hammer.connects == 1
    assert set(hammer.answers) == {"1", "2"} and follower.switches == 2
    # And once version 1 stopped answering it never answered again (the promotion is one switch)
    after = hammer.answers[max(i for i, v in enumerate(hammer.answers) if v == "1") + 1 :]
    assert after and set(after) == {"2"}
    # And every answer left its audit record naming the version that answered
    audited = [json.loads(line) for line in audit.read_text().splitlines()]
    assert Counter(r["package_version"] for r in audited) == Counter(hammer.answers)
    assert {r["status"] for r in audited} == {200}


def test_the_command_with_two_workers_follows_the_alias(tmp_path: Path) -> None:
    # Given a moto server whose Lambda has the alias on registry version 1
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto._server.port}"  # type: ignore[union-attr]
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)
    process = None
    try:
        world = make_world(tmp_path / "artifacts")
        one, two = world.publish("1"), world.publish("2")
        world.lambda_.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=one)
        # When `cnai serve --follow FUNCTION:live --workers 2` serves while the alias moves to version 2
        process = subprocess.Popen(
            [sys.executable, "-m", "cnai", "serve", "--follow", f"{FUNCTION}:live", "--follow-interval", "0.2",
             "--workers", "2", "--port", "0", "--audit", f"file:{tmp_path / 'audit.jsonl'}"],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert process.stdout is not None
        url = next((line.split()[2] for line in process.stdout if line.startswith("serving on ")), None)
        assert url is not None, f"cnai serve exited {process.wait(10)}"
        host, port = url.removeprefix("http://").split(":")
        with hammering(host, int(port)) as hammer:
            hammer.until(lambda: len(hammer.answers) >= 10)
            world.route(two)
            hammer.until(lambda: last(hammer, 20) == ["2"] * 20)
            # (fresh connections land on either worker: each has switched on its own within its interval)
            time.sleep(0.5)
            fresh = [fresh_answer(host, int(port)) for _ in range(12)]
        # Then no request failed, both versions answered, and every worker now answers with version 2
        assert hammer.failures == []
        assert set(hammer.answers) == {"1", "2"}
        assert fresh == ["2"] * 12
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        moto.stop()
