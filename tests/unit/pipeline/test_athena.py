"""The Athena snapshot's SQL: the Lambda path's rules in SQL, partition pruning, and where the switch is."""

from __future__ import annotations

import hashlib
import re
from datetime import date

import pytest

from cnai.data.snapshot import SPLIT_SALT, is_test
from cnai.errors import CnaiError
from cnai.pipeline.athena import AthenaTable, kept_rows, label_counts, overlap_sql, split_predicate, unload_sql
from cnai.pipeline.prepare import Limits, RangeSize, choose_engine

TABLE = AthenaTable("cnai_lake", "curated")
START, END = date(2026, 11, 1), date(2026, 11, 30)


def evaluate_predicate(sql: str, record_id: str) -> bool:
    """Evaluate split_predicate's SQL for one id the way Trino does: from_big_endian_64 is SIGNED."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{record_id}".encode()).digest()
    signed = int.from_bytes(digest[:8], "big", signed=True)
    expression = re.sub(r"from_big_endian_64\(.*?, 1, 8\)\)", "s", sql).replace("AND", "and").replace("OR", "or")
    return bool(eval(expression, {}, {"s": signed}))


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 0.7, 0.99])
def test_the_sql_split_puts_every_id_on_the_same_side_as_the_lambda_path(fraction: float) -> None:
    # Given the SQL predicate for a test fraction
    sql = split_predicate(fraction)
    # Then for many ids it agrees with cnai.data.snapshot.is_test (signed/unsigned translation included)
    ids = [f"id-{i}" for i in range(3000)]
    assert [evaluate_predicate(sql, i) for i in ids] == [is_test(i, fraction) for i in ids]
    # And it hashes the same salted string
    assert "to_utf8('cnai-split-v1:' || id)" in sql


def test_kept_rows_prunes_partitions_and_repeats_the_snapshot_rules() -> None:
    sql = kept_rows(TABLE, START, END, tenant="o'brien")
    # partition pruning on the partition column, not a scan filtered on timestamps only
    assert "dt BETWEEN '2026-11-01' AND '2026-11-30'" in sql
    # the same time window, labelled rows only, one row per id keeping the smallest (timestamp, text)
    assert "BETWEEN '2026-11-01' AND '2026-11-30T~'" in sql
    assert "label IS NOT NULL AND label <> ''" in sql
    assert "row_number() OVER (PARTITION BY id ORDER BY timestamp, text)" in sql and "WHERE rn = 1" in sql
    # a tenant is a quoted literal (quotes doubled), identifiers are quoted Glue names
    assert "tenant = 'o''brien'" in sql and 'FROM "cnai_lake"."curated"' in sql


def test_unload_writes_gzipped_json_of_one_split_to_an_empty_prefix() -> None:
    train = unload_sql(TABLE, START, END, 0.2, "train", "s3://lake/datasets/m/v/train/", None)
    test = unload_sql(TABLE, START, END, 0.2, "test", "s3://lake/datasets/m/v/test/", None)
    assert train.startswith("UNLOAD (SELECT id, text, label, tenant FROM (")
    assert train.endswith("TO 's3://lake/datasets/m/v/train/' WITH (format = 'JSON', compression = 'GZIP')")
    assert f"WHERE NOT {split_predicate(0.2)} ORDER BY id" in train
    assert f"WHERE {split_predicate(0.2)} ORDER BY id" in test
    with pytest.raises(CnaiError, match="ending in '/'"):
        unload_sql(TABLE, START, END, 0.2, "train", "s3://lake/datasets/m/v/train", None)
    with pytest.raises(CnaiError, match="Glue name"):
        unload_sql(AthenaTable("x; drop", "t"), START, END, 0.2, "train", "s3://lake/p/", None)


def test_the_leakage_query_counts_test_texts_found_in_train() -> None:
    sql = overlap_sql(TABLE, START, END, 0.2, None)
    assert sql.startswith("SELECT count(*) AS rows FROM (")
    assert "lower(text) IN (SELECT lower(text) FROM (" in sql


def test_label_count_rows_become_per_split_counters() -> None:
    counts = label_counts([["test", "a", "2"], ["train", "a", "10"], ["train", "b", "7"]])
    assert counts["train"] == {"a": 10, "b": 7} and counts["test"] == {"a": 2}


def test_the_switch_goes_to_athena_only_above_a_limit_and_only_when_configured() -> None:
    limits = Limits(max_objects=100, max_bytes=1_000)
    assert choose_engine(RangeSize(100, 1_000), limits, athena_configured=True) == "lambda"
    assert choose_engine(RangeSize(101, 10), limits, athena_configured=True) == "athena"
    assert choose_engine(RangeSize(1, 1_001), limits, athena_configured=True) == "athena"
    # the local platform has no Athena: the Lambda path, whatever the size
    assert choose_engine(RangeSize(10**6, 10**12), limits, athena_configured=False) == "lambda"
