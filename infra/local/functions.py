"""Lambda functions of the synthesized templates, run in this process: the local platform's Lambda service.

Each function is its handler module imported under the environment its template gives it (module-level
settings and clients are built at import, as on a cold start) and called with that environment in place, so
two functions with different CNAI_* settings coexist in one process. One invocation at a time: the
environment is process-wide, and a laptop run needs no concurrency here.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cnai.local.context import LocalContext
from infra.local.template import Function

_LOCK = threading.RLock()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` on top, restored afterwards (variables the call added are removed)."""
    with _LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class InProcessFunctions:
    """Callables by function name and ARN, each the deployed handler with its own environment."""

    def __init__(self, functions: Mapping[str, Function], extra_env: Mapping[str, str] | None = None) -> None:
        self.functions = dict(functions)
        self.extra_env = dict(extra_env or {})
        self._handlers: dict[str, Any] = {}
        self.invocations: dict[str, int] = {}

    def _env(self, function: Function) -> dict[str, str]:
        return {**function.environment, **self.extra_env, "AWS_LAMBDA_FUNCTION_NAME": function.name}

    def handler(self, name: str) -> Any:
        """The function's handler, from a module imported for this function alone (a cold start).

        The module is dropped from sys.modules before the import: a module imported earlier in this process
        (by another function with the same handler, another deployment, a test) holds settings and clients
        built under another environment, and reusing it would send this function's calls to those."""
        function = self.functions[name]
        if name not in self._handlers:
            module_name, _, attribute = function.handler.rpartition(".")
            with environment(self._env(function)):
                sys.modules.pop(module_name, None)
                module = importlib.import_module(module_name)
            self._handlers[name] = getattr(module, attribute)
        return self._handlers[name]

    def invoke(self, name_or_arn: str, event: Any, context: Any = None) -> Any:
        name = name_or_arn.rsplit(":function:", 1)[-1].split(":")[0]
        if name not in self.functions:
            raise KeyError(f"no function {name!r} in the templates (functions: {', '.join(sorted(self.functions))})")
        function = self.functions[name]
        handler = self.handler(name)
        self.invocations[name] = self.invocations.get(name, 0) + 1
        with environment(self._env(function)):
            return handler(event, context or LocalContext(function.name, timeout_s=function.timeout_s))

    def calls(self) -> int:
        """Invocations started so far, all functions together."""
        return sum(self.invocations.values())

    def settle(self, since: int, start_within_s: float = 10.0, quiet_s: float = 1.0, at_most_s: float = 120.0) -> None:
        """Wait until calls started after `since` (an execution stopped while its worker thread was about to invoke
        or was invoking a function: stopping does not interrupt the call) have ended and none started for
        `quiet_s`. Invocations run under the environment lock, so holding it means none is running. Bounded: if no
        call starts within `start_within_s`, there is nothing to wait for, and calls that keep starting are waited
        for `at_most_s` in all."""
        deadline = time.monotonic() + start_within_s
        while self.calls() == since and time.monotonic() < deadline:
            time.sleep(0.05)
        seen, give_up = -1, time.monotonic() + at_most_s
        while seen != self.calls() and time.monotonic() < give_up:
            seen = self.calls()
            with _LOCK:  # the call in flight, if any, has returned
                pass
            time.sleep(quiet_s)

    def callables(self) -> dict[str, Any]:
        """{function name and ARN: callable(event, context)} for the Step Functions extension."""
        table: dict[str, Any] = {}
        for name, function in self.functions.items():

            def call(event: Any, context: Any = None, _name: str = name) -> Any:
                return self.invoke(_name, event, context)

            table[name] = call
            table[function.arn] = call
        return table
