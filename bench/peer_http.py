"""What the two `make bench-serve` peers share: the request body they accept, the answer they return and the
server they run behind (cnai.local.server, API Gateway events), so that only the model path differs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cnai.local.server import Listening, serve_forever
from cnai.serving.asgi import FunctionHandler

Ranked = Sequence[tuple[str, float]]  # (label, score), best first
Predict = Callable[[list[str], int], Sequence[Ranked]]

_JSON = {"Content-Type": "application/json"}


def make_handler(predict: Predict, model_name: str, max_top_k: int | None = None) -> Any:
    """An API Gateway handler for `{"inputs": str | [str], "top_k": k}` answering cnai's prediction shape;
    `predict(texts, top_k)` returns, per text, its top-k (label, score) pairs."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            body = json.loads(event.get("body") or "")
            inputs = body["inputs"]
            texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
            top_k = max(1, int(body.get("top_k", 1)))
        except (ValueError, KeyError, TypeError):
            return {"statusCode": 400, "headers": _JSON, "body": '{"error":"bad"}'}
        if max_top_k is not None:
            top_k = min(top_k, max_top_k)
        predictions = []
        for ranked in predict(texts, top_k):
            top = [{"label": label, "score": float(score)} for label, score in ranked]
            predictions.append({"label": top[0]["label"], "score": top[0]["score"], "top_k": top})
        answer = {"model": model_name, "predictions": predictions}
        return {"statusCode": 200, "headers": _JSON, "body": json.dumps(answer)}

    return handler


def serve(factory: Callable[[], Predict], model_name: str, port: int, workers: int, ready: Callable[[Listening], None],
          max_top_k: int | None = None) -> int:  # fmt: skip
    """Serve `factory()`'s predict function (built once per worker) on 127.0.0.1:port."""
    serve_forever(lambda: FunctionHandler(make_handler(factory(), model_name, max_top_k)), "127.0.0.1", port,
                  workers, ready)  # fmt: skip
    return 0
