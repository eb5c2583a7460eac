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
