"""The large-range snapshot: Athena over the Glue table of the date-partitioned curated lake.

One Lambda reads and rewrites every curated object itself (cnai.data.snapshot), which is fine for a few
hundred MB and is the path on the local platform. Past that, 15 minutes of one Lambda is not enough, so the
same snapshot is computed by Athena instead: the queries below repeat the Lambda path's rules exactly
(labelled rows only, timestamps within the range, one row per id keeping the smallest (timestamp, text),
the stable split by sha256('cnai-split-v1:' + id)) and read only the partitions of the range
(`dt BETWEEN ...` on the partition column: partition pruning, not a full scan).

The Glue table (created by infra) is the curated JSON Lines, partitioned by `dt` (string, YYYY-MM-DD,
partition projection), with the columns id, text, label, tenant, source, timestamp (strings).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from cnai.data.snapshot import SPLIT_SALT
from cnai.errors import CnaiError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")


class AthenaError(CnaiError):
    """An Athena query failed or was cancelled; the message carries its state reason."""


def _literal(value: str) -> str:
    """A SQL string literal: quotes doubled (the only escape Trino knows)."""
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str, what: str) -> str:
    if not _IDENT.fullmatch(name):
        raise CnaiError(f"{what} {name!r}: lower-case letters, digits and '_' (a Glue name)")
    return f'"{name}"'


def split_predicate(test_fraction: float, column: str = "id") -> str:
    """SQL true for rows of the test split, identical to cnai.data.snapshot.is_test.

    is_test maps the first 8 bytes of the digest, read as an UNSIGNED 64-bit integer, to [0, 1).
    from_big_endian_64 reads them SIGNED, so the bound is translated: unsigned u < T holds when the signed
    value s is in [0, T) for T < 2^63, or when s >= 0 or s < T - 2^64 for T > 2^63.
    """
    if not 0.0 < test_fraction < 1.0:
        raise CnaiError(f"test_fraction {test_fraction} is not between 0 and 1")
    bound = int(test_fraction * 2**64)
    digest = f"from_big_endian_64(substr(sha256(to_utf8({_literal(SPLIT_SALT + ':')} || {column})), 1, 8))"
    if bound < 2**63:
        return f"({digest} >= 0 AND {digest} < {bound})"
    if bound == 2**63:  # 2^63 itself is no bigint literal
        return f"({digest} >= 0)"
    return f"({digest} >= 0 OR {digest} < {bound - 2**64})"


@dataclass(frozen=True)
class AthenaTable:
    database: str
    table: str

    @property
    def qualified(self) -> str:
        return f"{_ident(self.database, 'Glue database')}.{_ident(self.table, 'Glue table')}"


def kept_rows(table: AthenaTable, start: date, end: date, tenant: str | None) -> str:
    """The deduplicated, labelled rows of the range: the snapshot's input, as a subquery."""
    where = [
        f"dt BETWEEN {_literal(start.isoformat())} AND {_literal(end.isoformat())}",  # partition pruning
        f"regexp_replace(timestamp, 'Z$', '') BETWEEN {_literal(start.isoformat())} "
        f"AND {_literal(end.isoformat() + 'T~')}",
        "label IS NOT NULL AND label <> ''",
    ]
    if tenant is not None:
        where.append(f"tenant = {_literal(tenant)}")
    return (
        "SELECT id, text, label, tenant FROM ("
        "SELECT id, text, label, tenant, "
        "row_number() OVER (PARTITION BY id ORDER BY timestamp, text) AS rn "
        f"FROM {table.qualified} WHERE " + " AND ".join(where) + ") WHERE rn = 1"
    )


def unload_sql(
    table: AthenaTable, start: date, end: date, test_fraction: float, split: str, target: str, tenant: str | None
) -> str:
    """UNLOAD one split as gzipped JSON Lines under `target` (an empty s3:// prefix; Athena refuses others)."""
    if split not in ("train", "test"):
        raise CnaiError(f"split {split!r}: train or test")
    if not target.startswith("s3://") or not target.endswith("/"):
        raise CnaiError(f"UNLOAD target {target!r}: an s3:// prefix ending in '/'")
    test = split_predicate(test_fraction)
    keep = test if split == "test" else f"NOT {test}"
    return (
        f"UNLOAD (SELECT id, text, label, tenant FROM ({kept_rows(table, start, end, tenant)}) "
        f"WHERE {keep} ORDER BY id) "
        f"TO {_literal(target)} WITH (format = 'JSON', compression = 'GZIP')"
    )


def label_counts_sql(table: AthenaTable, start: date, end: date, test_fraction: float, tenant: str | None) -> str:
    test = split_predicate(test_fraction)
    return (
        f"SELECT CASE WHEN {test} THEN 'test' ELSE 'train' END AS split, label, count(*) AS rows "
        f"FROM ({kept_rows(table, start, end, tenant)}) GROUP BY 1, 2 ORDER BY 1, 2"
    )


def overlap_sql(table: AthenaTable, start: date, end: date, test_fraction: float, tenant: str | None) -> str:
    """Test rows whose (lower-cased) text also occurs in train: the leakage check of the Lambda path."""
    test = split_predicate(test_fraction)
    kept = kept_rows(table, start, end, tenant)
    return (
        f"SELECT count(*) AS rows FROM ({kept}) WHERE {test} AND lower(text) IN "
        f"(SELECT lower(text) FROM ({kept}) WHERE NOT {test})"
    )


class AthenaRunner:
    """Runs a query in the workgroup (its result location and encryption are the workgroup's) and waits."""

    def __init__(
        self,
        athena: Any,
        workgroup: str,
        database: str,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.athena = athena
        self.workgroup = workgroup
        self.database = database
        self.poll_s = poll_s
        self.sleep = sleep

    def run(self, sql: str) -> str:
        started = self.athena.start_query_execution(
            QueryString=sql, WorkGroup=self.workgroup, QueryExecutionContext={"Database": self.database}
        )
        query_id = str(started["QueryExecutionId"])
        while True:
            status = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return query_id
            if state in ("FAILED", "CANCELLED"):
                raise AthenaError(f"Athena query {query_id} {state}: {status.get('StateChangeReason', '')}")
            self.sleep(self.poll_s)

    def rows(self, query_id: str) -> list[list[str]]:
        """Result rows as strings, header row dropped."""
        out: list[list[str]] = []
        pages = self.athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id)
        for page in pages:
            for row in page["ResultSet"]["Rows"]:
                out.append([cell.get("VarCharValue", "") for cell in row["Data"]])
        return out[1:]


def label_counts(rows: list[list[str]]) -> dict[str, Counter[str]]:
    """[split, label, rows] result rows -> {"train": Counter, "test": Counter}."""
    counts: dict[str, Counter[str]] = {"train": Counter(), "test": Counter()}
    for split, label, n in rows:
        counts[split][label] += int(n)
    return counts
