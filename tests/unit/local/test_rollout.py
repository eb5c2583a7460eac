"""The local platform's rollout helpers: the alias as printed, the off-domain texts of the drift phase, waiting.
(The client that counts answers is tested over HTTP: tests/integration/test_platform_load.py.)"""

from __future__ import annotations

import pytest

from infra.local.rollout import describe_alias, off_domain_texts, wait_for


def test_the_alias_is_printed_with_its_shares() -> None:
    alias = {"FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.2}}}
    assert describe_alias(alias) == "version 2 80%, version 3 20% (canary)"
    assert describe_alias({"FunctionVersion": "3"}) == "version 3 100%"


def test_off_domain_texts_are_distinct_and_bounded() -> None:
    texts = off_domain_texts(240)
    assert len(set(texts)) == 240
    assert not any("card" in t or "account" in t or "transfer" in t for t in texts)  # nothing of banking
    with pytest.raises(ValueError, match="at most 240"):
        off_domain_texts(241)


def test_waiting_names_what_did_not_happen() -> None:
    with pytest.raises(TimeoutError, match="the canary: not within 0 s"):
        wait_for(lambda: False, 0.05, "the canary", sleep_s=0.01)
