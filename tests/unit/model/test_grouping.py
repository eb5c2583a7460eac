"""The serving path groups texts by token count: answers in input order, no row ever padded.

The toy model here is built to be padding-sensitive, like the real int8 graph (whose fused attention does not
mask padding): every position, [PAD] included, adds to the scores. A padded batch therefore answers a short
text differently from the text alone, and the grouped path must answer it exactly as alone.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnai.model import predictor as predictor_module
from cnai.model.artifact import MODEL_FILE, load_artifact, write_card
from cnai.model.predictor import Predictor
from tests.serving_toy import LABELS, WORDS, build_toy_artifact, toy_tokenizer

PAD_SCORE = 0.75  # what one [PAD] adds to the last label: a padded row drifts towards it


def padding_sensitive_onnx() -> onnx.ModelProto:
    """logits[b, l] = sum over ALL positions t of table[ids[b, t], l] (the mask is read but not applied)."""
    vocab = toy_tokenizer().get_vocab()
    table = np.zeros((len(vocab), len(LABELS)), dtype=np.float32)
    for word, (label, score) in WORDS.items():
        table[vocab[word], label] = score
    table[vocab["[PAD]"], len(LABELS) - 1] = PAD_SCORE
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["scores"], axis=0),
        helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),  # the input is used, its values are not
        helper.make_node("ReduceSum", ["scores", "axis1"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "padding_sensitive",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)]),
            helper.make_tensor_value_info("mask_shape", TensorProto.INT64, [2]),
        ],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    root = build_toy_artifact(tmp_path_factory.mktemp("grouping") / "model")
    onnx.save(padding_sensitive_onnx(), str(root / MODEL_FILE))
    write_card(root, load_artifact(root, verify=False).card)  # re-hash the replaced model
    return Predictor.from_dir(root, threads=1, cache_size=0)


MIXED = [
    "refund",  # 3 tokens with [CLS] and [SEP]
    "i lost my card",  # 6
    "top up please",  # 5
    "stolen",  # 3
    "please refund my money",  # 6
    "where is the card",  # 6
    "top up",  # 4
]


def alone(predictor: Predictor, texts: list[str]) -> np.ndarray:
    return np.concatenate([predictor.logits([t]) for t in texts])


def test_grouped_answers_come_back_in_input_order_equal_to_one_by_one(predictor: Predictor) -> None:
    # Given texts of mixed token counts, interleaved
    # When they are run through the serving path as one batch
    grouped = predictor.served_logits(MIXED)
    # Then row i is text i's answer, bit for bit what the text gets alone
    np.testing.assert_array_equal(grouped, alone(predictor, MIXED))


def test_the_padded_batch_differs_so_the_model_can_tell(predictor: Predictor) -> None:
    # Given the same texts as one padded batch (the evaluation path)
    padded = predictor.logits(MIXED)
    # Then the short texts drift (the toy model sees their padding): what grouping avoids
    lengths = [len(ids) for ids in predictor.token_ids(MIXED)]
    drift = padded[:, -1] - alone(predictor, MIXED)[:, -1]
    np.testing.assert_allclose(drift, [PAD_SCORE * (max(lengths) - n) for n in lengths])


def test_equal_length_texts_share_a_call_and_match_one_by_one(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given four texts of the same token count and two of another
    texts = ["i lost my card", "please refund my money", "where is the card", "refund", "stolen", "i want a refund"]
    calls: list[tuple[int, ...]] = []
    run = predictor.session.run

    def counting(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        calls.append(feeds["input_ids"].shape)
        return run(names, feeds)

    monkeypatch.setattr(predictor.session, "run", counting, raising=False)
    # When they are served
    grouped = predictor.served_logits(texts)
    # Then one call per token count, none padded (every mask would be all ones), and one-by-one answers
    assert sorted(calls) == [(2, 3), (4, 6)]
    monkeypatch.undo()
    np.testing.assert_array_equal(grouped, alone(predictor, texts))


def test_a_group_over_the_token_budget_is_split(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a budget of 12 tokens per call and five texts of 6 tokens
    monkeypatch.setattr(predictor_module, "GROUP_TOKENS", 12)
    texts = ["i lost my card", "please refund my money", "where is the card", "i lost my card", "i want a refund"]
    # When they are served
    grouped = predictor.served_logits(texts)
    # Then the answers are still each text's own, in order
    np.testing.assert_array_equal(grouped, alone(predictor, texts))


def test_empty_and_single_batches(predictor: Predictor) -> None:
    # Given no text, then one
    # Then no text gives an empty (0, labels) answer and one text its answer alone
    assert predictor.served_probabilities([]).shape == (0, len(LABELS))
    assert predictor.served_logits([]).shape == (0, len(LABELS))
    np.testing.assert_array_equal(predictor.served_logits(["refund"]), predictor.logits(["refund"]))
    assert predictor.predict([]) == []
    assert [p.label for p in predictor.predict(["refund"])] == ["refund"]


def test_predict_uses_the_grouped_path(predictor: Predictor) -> None:
    # Given a short text batched with a long one (padded, the short one would drift to the last label)
    texts = ["refund", "please refund my money where is the card top up i lost my card"]
    # When predicted
    results = predictor.predict(texts, top_k=len(LABELS))
    # Then each score is the text's own probability alone
    expected = predictor.served_probabilities(texts)
    for result, row, text in zip(results, expected, texts, strict=True):
        assert result.score == pytest.approx(float(row.max()))
        np.testing.assert_allclose(row, predictor.probabilities([text])[0], rtol=1e-6)
