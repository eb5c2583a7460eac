"""One model identity (ModelId) in every place that names the served model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cnai.audit.trail import Auditor, FileSink, read_records
from cnai.local.context import LocalContext
from cnai.model.identity import ModelId
from cnai.serving.api import ServingOptions, build_api
from tests.serving_toy import build_toy_artifact

EVENT = json.loads((Path(__file__).parents[2] / "events" / "apigw_rest_predict.json").read_text())


def test_str_and_parse_round_trip() -> None:
    for identity in (ModelId("intents", "4ac4c6c29500"), ModelId("intents", "4ac4c6c29500", "3")):
        assert ModelId.parse(str(identity)) == identity
    assert str(ModelId("intents", "v1", "3")) == "intents:v1@3"


@pytest.mark.parametrize("text", ["intents", "intents:", ":v1", "in tents:v1", "/x:v1"])
def test_parse_names_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="model id"):
        ModelId.parse(text)


def test_the_registry_version_names_the_model_in_response_audit_and_listings(tmp_path: Path) -> None:
    # Given a deployment serving a toy artifact as registry package version 3
    model = build_toy_artifact(tmp_path / "model")
    api = build_api(ServingOptions(model_uri=str(model), model_package_version="3", audit_sink="stdout"))
    api.auditor = Auditor(FileSink(tmp_path / "audit.jsonl"))
    expected = ModelId("toy", "toy0001", "3")
    # When a prediction is asked for, and the models are listed and described
    event = copy.deepcopy(EVENT) | {"body": json.dumps({"inputs": "refund"})}
    answer = json.loads(api.handle(event, LocalContext())["body"])
    listed = json.loads(api.handle(copy.deepcopy(EVENT) | {"httpMethod": "GET", "path": "/v1/models", "body": None},
                                   LocalContext())["body"])  # fmt: skip
    described = json.loads(
        api.handle(
            copy.deepcopy(EVENT) | {"httpMethod": "GET", "path": "/v1/models/toy", "body": None}, LocalContext()
        )["body"]
    )
    (record,) = read_records(tmp_path / "audit.jsonl")
    # Then every place shows the same identity
    assert ModelId(answer["model"], answer["version"], answer["package_version"]) == expected
    assert ModelId(str(record.model), str(record.model_version), record.package_version) == expected
    assert ModelId(**{k: listed["models"][0][k] for k in ("name", "version", "package_version")}) == expected
    assert ModelId(described["name"], described["version"], described["package_version"]) == expected
