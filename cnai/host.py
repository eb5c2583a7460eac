"""What this process may use of the machine it runs on: a module of its own so the light readers of it (the
generator's ONNX backend, the factory) do not import the classifier's predictor, and onnxruntime with it."""

from __future__ import annotations

import os


def host_threads() -> int:
    """CPUs this process may use (Lambda's vCPUs follow its memory size; containers pin affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
