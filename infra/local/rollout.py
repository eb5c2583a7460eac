"""The local platform past its first prediction: a second version approved, the deploy workflow's canary on the
local alias while `cnai serve --follow` answers, 100%, a rollback by command, and injected drift.

What the second version is, stated honestly: the artifact of version 1 registered again as a new package
version (training again takes minutes). Its function version pins registry version 2, so every answer and audit
record says which version answered, and the alias moves exactly as it would for a new model.

The pieces are the platform's own: `cnai models approve | rollback` (separate processes, audited), the approval
bridge (cnai.local.events: SageMaker's event, the synthesized rule's pattern) starting the synthesized deploy
state machine, whose Lambda tasks run the deploy handler in process (cnai.local.stepfunctions), and the drift
monitor's own code (cnai.monitoring.monitor) with the monitor function's environment from the template.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Load:
    """A client posting predictions back to back over one keep-alive connection, as a busy caller would: every
    answer's registry version and time, and every failure (a status other than 200, a dropped connection)."""

    url: str
    model: str
    texts: list[str]
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    pause_s: float = 0.01  # between calls: the 2-core machine also runs moto and the deploy workflow
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="cnai-platform-load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        path = f"/v1/models/{self.model}/predict"
        for text in itertools.cycle(self.texts):
            if self.stop.is_set():
                break
            try:
                connection.request("POST", path, json.dumps({"inputs": text}), {"Content-Type": "application/json"})
                response = connection.getresponse()
                body = response.read()
                if response.status == 200:
                    self.answers.append((time.monotonic(), str(json.loads(body).get("package_version"))))
                else:
                    self.failures.append((time.monotonic(), f"{response.status}: {body[:200]!r}"))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append((time.monotonic(), repr(exc)))
                connection.close()
            self.stop.wait(self.pause_s)
        connection.close()

    def finish(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def since(self, started: float) -> tuple[Counter[str], int]:
        """(answers by registry version, failures) from `started` (a time.monotonic reading) on."""
        answered = Counter(version for at, version in list(self.answers) if at >= started)
        return answered, sum(1 for at, _ in list(self.failures) if at >= started)


def describe_alias(alias: dict[str, Any]) -> str:
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    stable = f"version {alias['FunctionVersion']} {1 - sum(weights.values()):.0%}"
    return ", ".join([stable, *(f"version {v} {w:.0%} (canary)" for v, w in weights.items())])


@dataclass
class AliasWatch:
    """Prints the alias every time it moves (GetAlias every `interval_s`), with the time since `started`."""

    lambda_: Any
    function: str
    say: Callable[[str], None]
    alias: str = "live"
    interval_s: float = 0.2
    seen: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def start(self) -> AliasWatch:
        threading.Thread(target=self._run, name="cnai-platform-alias", daemon=True).start()
        return self

    def _run(self) -> None:
        last = None
        while not self.stop.is_set():
            try:
                now = describe_alias(self.lambda_.get_alias(FunctionName=self.function, Name=self.alias))
            except Exception as exc:  # moto busy: look again
                now = f"unreadable ({type(exc).__name__})"
            if now != last:
                self.seen.append((round(time.monotonic() - self.started, 2), now))
                self.say(f"  +{time.monotonic() - self.started:5.1f} s  alias {self.alias}: {now}")
                last = now
            self.stop.wait(self.interval_s)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, sleep_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(sleep_s)


# Texts of other domains (weather, travel, music, cooking, sport, home): what a banking intent model was never
# trained on. Combined from a few lists so that a run can send a few hundred distinct texts.
_OFF_DOMAIN = [
    ("what will the weather be like in {place} on {day}", ["Lisbon", "Oslo", "Denver", "Kyoto", "Nairobi"]),
    ("book me a train from {place} to the coast on {day}", ["Lyon", "Leeds", "Porto", "Munich", "Turin"]),
    ("play some jazz by {place} for my {day} playlist", ["Miles", "Nina", "Chet", "Ella", "Dizzy"]),
    ("how long do I roast {place} for {day} dinner", ["a chicken", "potatoes", "lamb", "squash", "a duck"]),
    ("who won the {place} match on {day}", ["football", "tennis", "rugby", "cricket", "hockey"]),
    ("remind me to water the {place} on {day} morning", ["tomatoes", "roses", "lawn", "ferns", "basil"]),
]
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "the weekend"]


def off_domain_texts(count: int) -> list[str]:
    """`count` distinct texts from other domains (at most 240)."""
    texts = [
        template.format(place=place, day=day) for day in _DAYS for template, places in _OFF_DOMAIN for place in places
    ]
    if count > len(texts):
        raise ValueError(f"off-domain texts: at most {len(texts)}, asked for {count}")
    return texts[:count]
