"""cnai.local.stepfunctions' plain parts: names, Lambda's invoke shapes, error names, the moto pin, the seams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnai.local import stepfunctions
from cnai.local.stepfunctions import (
    LocalStepFunctions,
    check_moto_version,
    function_name_of,
    invoke_in_process,
    sagemaker_error_name,
    split_s3_uri,
)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("prepare", "prepare"),
        ("prepare:live", "prepare"),
        ("123456789012:function:prepare", "prepare"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:cnai-dev-prepare", "cnai-dev-prepare"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:cnai-dev-prepare:7", "cnai-dev-prepare"),
    ],
)
def test_function_names_are_read_from_every_form_invoke_accepts(given: str, name: str) -> None:
    assert function_name_of(given) == name


def test_an_arn_of_another_service_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="FunctionName: not a Lambda function ARN"):
        function_name_of("arn:aws:sns:eu-west-1:123456789012:topic")


def test_a_handler_result_is_the_payload_of_a_200() -> None:
    # Given a handler that reads its event and context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"echo": event["x"], "fn": context.function_name, "left": context.get_remaining_time_in_millis() > 0}

    # When
    response = invoke_in_process(handler, "prepare", json.dumps({"x": 1}).encode(), timeout_s=60)

    # Then
    assert response == {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "Payload": {"echo": 1, "fn": "prepare", "left": True},
    }


def test_an_exception_is_the_python_runtimes_unhandled_error_payload() -> None:
    def handler(event: dict[str, Any], context: Any) -> None:
        raise KeyError("manifest_uri")

    response = invoke_in_process(handler, "prepare", b"{}", timeout_s=60)

    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    payload = response["Payload"]
    assert payload["errorType"] == "KeyError" and payload["errorMessage"] == "'manifest_uri'"
    assert payload["requestId"] and any("in handler" in frame for frame in payload["stackTrace"])
    assert not any("invoke_in_process" in frame for frame in payload["stackTrace"])


def test_a_result_that_is_not_json_is_a_marshal_error() -> None:
    response = invoke_in_process(lambda event, context: {"when": object()}, "notify", None, timeout_s=60)

    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "Runtime.MarshalError"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ResourceLimitExceeded", "SageMaker.ResourceLimitExceededException"),
        ("ResourceInUse", "SageMaker.ResourceInUseException"),
        ("ConflictException", "SageMaker.ConflictException"),
        ("ThrottlingException", "SageMaker.AmazonSageMakerException"),
        ("ValidationException", "SageMaker.AmazonSageMakerException"),
    ],
)
def test_sagemaker_api_errors_get_step_functions_names(code: str, error: str) -> None:
    assert sagemaker_error_name(code) == error


def test_s3_uris_split_and_bad_ones_are_named() -> None:
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an S3 URI: 'https://x/y'"):
        split_s3_uri("https://x/y")


def test_another_moto_minor_is_refused_with_what_to_do() -> None:
    assert check_moto_version("5.2.9") == "5.2.9"
    with pytest.raises(RuntimeError, match=r"found moto 5\.3\.0: pin moto to 5\.2\.\*"):
        check_moto_version("5.3.0")
    with pytest.raises(RuntimeError):
        check_moto_version("5.20.1")


def test_the_seams_are_moto_functions_again_after_exit() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils, state_task_factory
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    # Given moto's own functions
    before = (
        lambda_eval_utils._invoke_lambda_function,
        state_task_factory.state_task_service_for,
        state_fail.CustomErrorName,
    )
    runner = stepfunctions.LocalTrainingRunner(source_dir=Path(), work_dir=Path())

    # When active, ours are in place, and a second activation is refused
    with LocalStepFunctions({"prepare": lambda e, c: None}, runner):
        assert lambda_eval_utils._invoke_lambda_function is not before[0]
        assert state_task_factory.state_task_service_for is not before[1]
        assert state_task_factory.state_task_service_for(service_name="sns").__class__.__name__ == "StateTaskServiceSns"
        with pytest.raises(RuntimeError, match="already active"), LocalStepFunctions({}):
            pass

    # Then moto's are back
    after = (
        lambda_eval_utils._invoke_lambda_function,
        state_task_factory.state_task_service_for,
        state_fail.CustomErrorName,
    )
    assert after == before
