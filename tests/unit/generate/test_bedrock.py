"""Amazon Bedrock behind the Generator interface, against botocore's Stubber: the Converse request we send
(system turn apart, inference settings, stop sequences) and the Generation we make of its answer."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from cnai.generate import GenerationParams, Generator, load_generator
from cnai.generate.bedrock import BedrockError, BedrockGenerator

MODEL = "amazon.nova-micro-v1:0"


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def answer(text: str, reason: str = "end_turn", tokens: tuple[int, int] = (21, 7)) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": reason,
        "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
        "metrics": {"latencyMs": 120},
    }


def test_a_chat_becomes_one_converse_call_and_one_generation(client: Any) -> None:
    # Given a chat with a system turn and sampling settings
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "I lost my card"}]
    params = GenerationParams(max_new_tokens=40, temperature=0.7, top_p=0.9, stop=("\n\n",))
    expected = {
        "modelId": MODEL,
        "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": "I lost my card"}]}],
        "inferenceConfig": {"maxTokens": 40, "temperature": 0.7, "topP": 0.9, "stopSequences": ["\n\n"]},
    }
    with Stubber(client) as stub:
        stub.add_response("converse", answer("We have frozen it.", "max_tokens"), expected)
        generator = BedrockGenerator(MODEL, client=client)
        # When it generates
        result = generator.generate(chat, params)
        stub.assert_no_pending_responses()
    # Then the answer, Bedrock's token counts and the mapped finish reason come back
    assert (result.text, result.tokens_in, result.tokens_out, result.finish_reason) == (
        "We have frozen it.",
        21,
        7,
        "length",
    )
    assert isinstance(generator, Generator) and generator.identity.version == "bedrock"


def test_a_refusal_names_the_model_and_bedrock_code(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("converse", "AccessDeniedException", "no access to this model", 403)
        with pytest.raises(BedrockError, match=r"amazon\.nova-micro-v1:0: AccessDeniedException: no access"):
            BedrockGenerator(MODEL, client=client).generate("hi")


def test_a_connection_failure_is_a_bedrock_error(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a client that cannot reach Bedrock (no credentials, no route) / Then a BedrockError, not botocore's
    def unreachable(**_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com")

    monkeypatch.setattr(client, "converse", unreachable)
    with pytest.raises(BedrockError, match=r"amazon\.nova-micro-v1:0: Could not connect"):
        BedrockGenerator(MODEL, client=client).generate("hi")


def test_load_generator_routes_bedrock_uris_without_calling_aws() -> None:
    # Given a bedrock: URI / When loaded / Then a BedrockGenerator, no client built yet (no AWS call at load)
    generator = load_generator(f"bedrock:{MODEL}")
    assert isinstance(generator, BedrockGenerator) and generator.model_id == MODEL and generator._client is None
    with pytest.raises(BedrockError, match="a model id is required"):
        load_generator("bedrock:")


def test_each_deadline_gets_a_client_whose_read_timeout_is_it_without_retries_and_few_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given boto3 clients that record the configuration they were made with
    made: list[Any] = []

    def fake_client(service: str, config: Any) -> Any:
        made.append(config)
        return config

    monkeypatch.setattr(boto3, "client", fake_client)
    generator = BedrockGenerator(MODEL)

    def client_for(deadline: float | None) -> Any:
        return generator._bedrock(GenerationParams(deadline_s=deadline))

    # When calls come with deadlines of 2.3 s and 2.9 s, and one without a deadline
    short, same, open_ended = client_for(2.3), client_for(2.9), client_for(None)
    # Then both deadlines share a client that stops reading at 3 s and does not retry past it
    assert short is same and short.read_timeout == 3 and short.retries == {"total_max_attempts": 1}
    # And the call without one waits 60 s with botocore's standard retries
    assert open_ended.read_timeout == 60 and open_ended.retries == {"mode": "standard"}
    # And a caller choosing ever new deadlines cannot grow the set: only the 4 most recent are kept
    for deadline in (10, 20, 30, 40, 50):
        client_for(deadline)
    assert len(generator._clients) == 4 and 3 not in generator._clients
    assert client_for(50).read_timeout == 50 and len(made) == 7
