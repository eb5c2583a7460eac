"""The request/answer handler both `make bench-serve` peers share (bench/peer_http.py): cnai's prediction shape
for a string or a list, top_k bounded by the labels, 400 for a body it cannot read."""

from __future__ import annotations

import json

import pytest

from bench.peer_http import make_handler

RANKED = [("refund", 0.7), ("card", 0.2), ("atm", 0.1)]


def predict(texts: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    return [RANKED[:top_k] for _ in texts]


@pytest.mark.parametrize(("inputs", "count"), [("one text", 1), (["a", "b"], 2)])
def test_the_answer_has_cnai_s_shape(inputs: object, count: int) -> None:
    # Given the shared handler / When it is asked for top 5 of 2 labels allowed
    handler = make_handler(predict, "peer", max_top_k=2)
    response = handler({"body": json.dumps({"inputs": inputs, "top_k": 5})}, None)
    # Then each text gets its best label, its score and top_k bounded to 2
    assert response["statusCode"] == 200
    answer = json.loads(response["body"])
    assert answer["model"] == "peer"
    top = [{"label": "refund", "score": 0.7}, {"label": "card", "score": 0.2}]
    assert answer["predictions"] == [{"label": "refund", "score": 0.7, "top_k": top}] * count


@pytest.mark.parametrize("body", ["", "not json", "{}", '{"inputs": "x", "top_k": "many"}', '{"inputs": 3}'])
def test_a_body_it_cannot_read_is_400(body: str) -> None:
    response = make_handler(predict, "peer")({"body": body}, None)
    assert response["statusCode"] == 400
