"""The augmentation recipe: hyperparameters reach the stage, bad ones are refused naming the field."""

from __future__ import annotations

import pytest

from models.augment import generation_key, recipe_from
from models.config import ConfigError, parse
from tests.unit.augment.test_filters import TRAIN

BASE = ["--train", "t.csv", "--test", "t.csv"]


def test_augment_flags_reach_the_recipe() -> None:
    cfg = parse([*BASE, "--augment_per_label", "12", "--augment-disagreeing", "drop"], env={})
    recipe = recipe_from(cfg.hp)
    assert (recipe.per_label, recipe.disagreeing, recipe.seed) == (12, "drop", 42)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--augment_min_chars", "50", "--augment_max_chars", "20"], "augment_min_chars"),
        (["--augment_disagreeing", "keep"], "augment_disagreeing"),
        (["--augment_per_label", "-1"], "augment_per_label"),
    ],
)
def test_bad_augment_settings_are_refused_naming_the_field(flags: list[str], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse([*BASE, *flags], env={})


def test_the_generation_key_changes_with_what_decides_the_candidates_only() -> None:
    # Given a recipe
    base = parse([*BASE, "--augment_per_label", "4"], env={}).hp
    key = generation_key(base, TRAIN)
    # Then a filter or teacher setting leaves the candidates' key alone, a sampling setting changes it
    assert generation_key(base.model_copy(update={"augment_min_confidence": 0.9}), TRAIN) == key
    assert generation_key(base.model_copy(update={"student_epochs": 3}), TRAIN) == key
    assert generation_key(base.model_copy(update={"augment_temperature": 0.5}), TRAIN) != key
