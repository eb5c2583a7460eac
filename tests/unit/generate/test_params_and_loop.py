"""The generator's request types and the shared decoding loop (stop, end of turn, length, deadline), on a real
tokenizer (tests/generate_tiny.py) and scripted token streams: the backends only supply the next token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnai.generate import GenerationError, GenerationParams, decode
from cnai.generate.decode import TextCodec, check_context, render_chat, run_loop
from cnai.generate.params import check_messages
from tests.generate_tiny import write_tokenizer


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> TextCodec:
    return TextCodec.from_file(write_tokenizer(tmp_path_factory.mktemp("tok")))


def ids(codec: TextCodec, text: str) -> list[int]:
    return codec.encode(text)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 5000}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": "x"}, "stop"),
        ({"stop": ("",)}, "stop.0"),
        ({"stop": tuple("abcdefghi")}, "stop"),
        ({"deadline_s": 0.0}, "deadline_s"),
    ],
)
def test_bad_params_name_their_field(kwargs: dict[str, object], field: str) -> None:
    # Given a parameter out of bounds / When the params are built / Then the error names that field
    with pytest.raises(GenerationError) as caught:
        GenerationParams(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_messages_are_checked_turn_by_turn() -> None:
    # Given chats with a bad role, an empty content, an assistant last / Then each error names the message
    with pytest.raises(GenerationError, match=r"messages\.1\.role"):
        check_messages([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}])
    with pytest.raises(GenerationError, match=r"messages\.0\.content"):
        check_messages([{"role": "user", "content": "  "}])
    with pytest.raises(GenerationError, match=r"messages\.1\.role.*assistant"):
        check_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    # And a plain string is one user turn
    assert check_messages("hello") == [{"role": "user", "content": "hello"}]


def test_chat_rendering_is_chatml_with_the_default_system_turn() -> None:
    # Given a one-turn chat / When rendered / Then SmolLM2's template: default system, user, open assistant turn
    text = render_chat("hello")
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )
    # And a chat that starts with its own system turn gets no default one
    own = render_chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert own.startswith("<|im_start|>system\nbe brief<|im_end|>\n") and own.count("system") == 1


def scripted(tokens: list[int]) -> Iterator[int]:
    yield from tokens


def test_end_of_turn_stops_and_is_not_counted(codec: TextCodec) -> None:
    # Given a stream "hello card <|im_end|> lost" / When decoded / Then it stops at the end of turn
    end = min(codec.eos_ids)
    stream = [*ids(codec, "hello card"), end, *ids(codec, "lost")]
    result = run_loop(codec, [1, 2, 3], scripted(stream), GenerationParams(max_new_tokens=10), time.perf_counter())
    assert (result.text, result.tokens_out, result.tokens_in, result.finish_reason) == ("hello card", 2, 3, "stop")


def test_a_stop_sequence_cuts_the_text_before_it(codec: TextCodec) -> None:
    # Given a stop sequence that appears mid-stream / Then the text ends before it, finish_reason "stop"
    stream = ids(codec, "hello card stop lost reply")
    params = GenerationParams(max_new_tokens=10, stop=("stop",))
    result = run_loop(codec, [1], scripted(stream), params, time.perf_counter())
    assert result.text == "hello card " and result.finish_reason == "stop" and result.tokens_out == 3


def test_the_token_budget_ends_with_length(codec: TextCodec) -> None:
    stream = ids(codec, "hello card lost reply thanks")
    result = run_loop(codec, [1], scripted(stream), GenerationParams(max_new_tokens=2), time.perf_counter())
    assert (result.text, result.finish_reason, result.token_ids) == ("hello card", "length", tuple(stream[:2]))


def test_the_deadline_returns_the_text_so_far(codec: TextCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a backend taking 20 ms a token on a fake clock and a 50 ms deadline / Then the tokens out by then
    # (the deadline is checked between tokens: the third one, at 60 ms, is the first past it), "deadline"
    now = [0.0]
    monkeypatch.setattr(decode, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def slow(tokens: list[int]) -> Iterator[int]:
        for token in tokens:
            now[0] += 0.02
            yield token

    stream = ids(codec, " ".join(["hello"] * 50))
    params = GenerationParams(max_new_tokens=50, deadline_s=0.05)
    result = run_loop(codec, [1], slow(stream), params, 0.0)
    assert (result.finish_reason, result.tokens_out, result.token_ids) == ("deadline", 3, tuple(stream[:3]))
    assert result.text.startswith("hello")
    assert (result.ttft_ms, result.total_ms) == pytest.approx((20.0, 60.0))


def test_prompt_plus_budget_must_fit_the_context(codec: TextCodec) -> None:
    with pytest.raises(GenerationError, match="exceed the model's context of 100"):
        check_context(list(range(90)), GenerationParams(max_new_tokens=20), 100)


def test_missing_tokenizer_is_named(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match=r"tokenizer\.json: missing"):
        TextCodec.from_file(tmp_path / "tokenizer.json")
