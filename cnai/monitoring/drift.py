"""Drift scores: a window of served traffic (audit records) against the serving model's dataset profile.

Pure computation, no I/O: `Baseline` comes from the dataset manifest's profile (cnai/data/snapshot.py) plus the
registry's accuracy; `Traffic` from audit records (cnai/audit/trail.py). What an audit record holds decides what
can be compared: the predicted label and its calibrated top probability (`outputs`), abstentions (label None),
each input's length in characters (`inputs[].chars`), and the redacted text only where the deployment opted in
(`audit.store_text`). So:

| score | window | baseline |
| --- | --- | --- |
| `label_psi` | predicted labels | the dataset's label distribution |
| `length_psi` | input lengths, bucketed as the profile's histogram | the profile's length histogram |
| `confidence_drop` | mean top probability | the version's accuracy (a calibrated model's mean confidence) |
| `abstention_rate` | share of inputs answered "no label" | absolute bar (the training side records none) |
| `unknown_token_rate` | share of tokens outside the profile's top vocabulary | the same share in the dataset |

`unknown_token_rate` needs texts: without `store_text` it is reported as not computable, never guessed. The
profile keeps the dataset's top tokens only (TOP_TOKENS), so "unknown" means "outside the training data's
common vocabulary", compared with how often the training data itself leaves it: a shift, not an absolute rate.

Why an allowance on top of each threshold: a window of N predictions drawn from the training distribution
itself scores a PSI of about (K-1)/N over K categories (PSI ~ chi-square / N). With 77 intents and 300
predictions that is 0.25, the textbook "major shift" bar. Each score therefore has `limit = threshold +
allowance`, the allowance being what sampling alone reaches at about two standard deviations, and the report
shows both, so "why did it fire" always has an answer in numbers.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cnai.audit.trail import AuditRecord
from cnai.data.snapshot import _TOKEN, LENGTH_BINS  # one tokenization for profile and window (no public name)

SMOOTHING = 0.5  # Jeffreys prior: an empty category costs a bounded amount instead of log(0)


class Thresholds(BaseModel):
    """The bar of each score (before its sampling allowance). Defaults: PSI's usual "significant shift" 0.25;
    a calibrated model losing 15 points of confidence; a third of the inputs refused; 15 more points of tokens
    outside the training vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_psi: float = Field(0.25, gt=0, le=10)
    length_psi: float = Field(0.25, gt=0, le=10)
    confidence_drop: float = Field(0.15, gt=0, le=1)
    abstention_rate: float = Field(0.30, gt=0, le=1)
    unknown_token_rate: float = Field(0.15, gt=0, le=1)


class Score(BaseModel):
    """One comparison. `value` None: not computable from what is audited or profiled (`detail` says why)."""

    name: str
    value: float | None
    threshold: float
    allowance: float = 0.0
    exceeded: bool = False
    detail: str = ""

    @property
    def limit(self) -> float:
        return self.threshold + self.allowance


@dataclass(frozen=True)
class Baseline:
    """What the served model was trained on: the manifest profile's distributions, and its expected confidence."""

    labels: Mapping[str, int]  # training rows per label
    lengths: Mapping[int, int]  # rows per LENGTH_BINS lower bound
    vocabulary: frozenset[str] = frozenset()
    known_share: float | None = None  # share of the dataset's tokens inside `vocabulary`
    expected_confidence: float | None = None

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], expected_confidence: float | None = None) -> Baseline:
        """From a manifest's `profile`; missing parts (an Athena-built manifest keeps only the label count)
        give empty distributions, which the scores then report as not computable."""
        distribution = (profile.get("labels") or {}).get("distribution") or {}
        labels = {str(k): int(v["rows"]) for k, v in distribution.items() if isinstance(v, Mapping)}
        histogram = (profile.get("text_length_chars") or {}).get("histogram") or {}
        lengths = {int(str(k).removeprefix(">=")): int(v) for k, v in histogram.items()}
        vocabulary = profile.get("vocabulary") or {}
        top = [(str(t), int(n)) for t, n in vocabulary.get("top") or []]
        total = int(vocabulary.get("tokens") or 0)
        known = sum(n for _, n in top) / total if top and total else None
        return cls(labels, lengths, frozenset(t for t, _ in top), known, expected_confidence)


@dataclass
class Traffic:
    """The window's predictions, flattened from audit records (one entry per input)."""

    labels: list[str | None] = field(default_factory=list)  # None: abstained
    scores: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # only from records that carry them
    records: int = 0

    @classmethod
    def from_records(cls, records: Iterable[AuditRecord]) -> Traffic:
        """Answered calls only (status 200 with outputs): a refused call predicted nothing."""
        traffic = cls()
        for record in records:
            if record.status != 200 or not record.outputs:
                continue
            traffic.records += 1
            for output in record.outputs:
                traffic.labels.append(output.label)
                traffic.scores.append(output.score)
            traffic.lengths += [digest.chars for digest in record.inputs]
            traffic.texts += record.texts or []
        return traffic

    @property
    def predictions(self) -> int:
        return len(self.labels)


def psi(expected: Mapping[Any, float], actual: Mapping[Any, float], smoothing: float = SMOOTHING) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over the union of categories, both sides smoothed
    additively (`smoothing` per category) so a category one side never saw costs a finite amount."""
    keys = set(expected) | set(actual)
    if not keys:
        return 0.0
    e_total = sum(expected.values()) + smoothing * len(keys)
    a_total = sum(actual.values()) + smoothing * len(keys)
    value = 0.0
    for key in keys:
        e = (expected.get(key, 0) + smoothing) / e_total
        a = (actual.get(key, 0) + smoothing) / a_total
        value += (a - e) * math.log(a / e)
    return value


def psi_allowance(categories: int, window: int, baseline: int) -> float:
    """PSI that sampling alone reaches at about two standard deviations: (K-1 + 2 sqrt(2 (K-1))) (1/N + 1/M),
    the chi-square approximation of PSI for K categories, a window of N and a baseline of M."""
    if categories < 2 or window < 1:
        return 0.0
    df = categories - 1
    return (df + 2 * math.sqrt(2 * df)) * (1 / window + (1 / baseline if baseline else 0.0))


def length_bucket(chars: int) -> int:
    """The profile's histogram bucket: the largest LENGTH_BINS bound not above `chars`."""
    return max(b for b in LENGTH_BINS if b <= chars)


def _exceeded(score: Score) -> Score:
    if score.value is not None:
        score.exceeded = score.value > score.limit
    return score


def label_psi(baseline: Baseline, traffic: Traffic, threshold: float) -> Score:
    answered = Counter(label for label in traffic.labels if label is not None)
    if not baseline.labels:
        return Score(name="label_psi", value=None, threshold=threshold,
                     detail="the dataset profile has no label distribution (an Athena-built manifest?)")  # fmt: skip
    n = sum(answered.values())
    if not n:
        return Score(name="label_psi", value=None, threshold=threshold, detail="no labelled answer in the window")
    categories = len(set(baseline.labels) | set(answered))
    value = psi(baseline.labels, answered)
    unseen = sorted(set(answered) - set(baseline.labels))
    top = ", ".join(f"{label} {count / n:.0%}" for label, count in answered.most_common(3))
    detail = f"{n} labelled answers over {categories} labels; most answered: {top}"
    if unseen:
        detail += f"; labels the dataset does not have: {', '.join(unseen[:5])}"
    allowance = psi_allowance(categories, n, sum(baseline.labels.values()))
    return _exceeded(Score(name="label_psi", value=round(value, 6), threshold=threshold,
                           allowance=round(allowance, 6), detail=detail))  # fmt: skip


def length_psi(baseline: Baseline, traffic: Traffic, threshold: float) -> Score:
    if not baseline.lengths or not sum(baseline.lengths.values()):
        return Score(name="length_psi", value=None, threshold=threshold,
                     detail="the dataset profile has no length histogram")  # fmt: skip
    if not traffic.lengths:
        return Score(name="length_psi", value=None, threshold=threshold, detail="no input in the window")
    window = Counter(length_bucket(n) for n in traffic.lengths)
    used = {b for b, n in baseline.lengths.items() if n} | set(window)
    value = psi({b: baseline.lengths.get(b, 0) for b in used}, {b: window.get(b, 0) for b in used})
    allowance = psi_allowance(len(used), len(traffic.lengths), sum(baseline.lengths.values()))
    mean = statistics.fmean(traffic.lengths)
    detail = f"{len(traffic.lengths)} inputs, mean {mean:.0f} chars, over {len(used)} length buckets"
    return _exceeded(Score(name="length_psi", value=round(value, 6), threshold=threshold,
                           allowance=round(allowance, 6), detail=detail))  # fmt: skip


def confidence_drop(baseline: Baseline, traffic: Traffic, threshold: float) -> Score:
    if baseline.expected_confidence is None:
        return Score(name="confidence_drop", value=None, threshold=threshold,
                     detail="the registry version has no accuracy metric to expect a confidence from")  # fmt: skip
    if not traffic.scores:
        return Score(name="confidence_drop", value=None, threshold=threshold, detail="no answer in the window")
    mean = statistics.fmean(traffic.scores)
    spread = statistics.pstdev(traffic.scores) if len(traffic.scores) > 1 else 0.0
    allowance = 2 * spread / math.sqrt(len(traffic.scores))  # two standard errors of the window's mean
    detail = f"mean top probability {mean:.3f} vs expected {baseline.expected_confidence:.3f} (its accuracy)"
    return _exceeded(Score(name="confidence_drop", value=round(baseline.expected_confidence - mean, 6),
                           threshold=threshold, allowance=round(allowance, 6), detail=detail))  # fmt: skip


def abstention_rate(traffic: Traffic, threshold: float) -> Score:
    if not traffic.predictions:
        return Score(name="abstention_rate", value=None, threshold=threshold, detail="no answer in the window")
    refused = sum(label is None for label in traffic.labels)
    detail = f"{refused} of {traffic.predictions} inputs answered without a label"
    return _exceeded(Score(name="abstention_rate", value=round(refused / traffic.predictions, 6),
                           threshold=threshold, detail=detail))  # fmt: skip


def words(text: str) -> list[str]:
    """The profile's tokenization (cnai/data/snapshot.py profile): redaction markers kept, the rest lower-cased."""
    return [w if w.startswith("[") else w.lower() for w in _TOKEN.findall(text)]


def unknown_token_rate(baseline: Baseline, traffic: Traffic, threshold: float) -> Score:
    if not traffic.texts:
        return Score(name="unknown_token_rate", value=None, threshold=threshold,
                     detail="the audit records hold no text (audit.store_text is off): not computable")  # fmt: skip
    if baseline.known_share is None or not baseline.vocabulary:
        return Score(name="unknown_token_rate", value=None, threshold=threshold,
                     detail="the dataset profile has no vocabulary")  # fmt: skip
    tokens = [w for text in traffic.texts for w in words(text)]
    if not tokens:
        return Score(name="unknown_token_rate", value=None, threshold=threshold, detail="the texts hold no token")
    unknown = sum(w not in baseline.vocabulary for w in tokens) / len(tokens)
    expected = 1.0 - baseline.known_share
    allowance = 2 * math.sqrt(max(expected * (1 - expected), 1e-6) / len(tokens))
    detail = (f"{unknown:.1%} of {len(tokens)} tokens outside the dataset's top {len(baseline.vocabulary)} "
              f"(the dataset itself: {expected:.1%})")  # fmt: skip
    return _exceeded(Score(name="unknown_token_rate", value=round(unknown - expected, 6), threshold=threshold,
                           allowance=round(allowance, 6), detail=detail))  # fmt: skip


Decision = Literal["no_drift", "drift", "insufficient_traffic", "no_baseline"]


def assess(baseline: Baseline, traffic: Traffic, thresholds: Thresholds) -> list[Score]:
    """Every score, computable or not, in a fixed order."""
    return [
        label_psi(baseline, traffic, thresholds.label_psi),
        length_psi(baseline, traffic, thresholds.length_psi),
        confidence_drop(baseline, traffic, thresholds.confidence_drop),
        abstention_rate(traffic, thresholds.abstention_rate),
        unknown_token_rate(baseline, traffic, thresholds.unknown_token_rate),
    ]


def decide(scores: Sequence[Score], traffic: Traffic, min_predictions: int) -> tuple[Decision, list[str]]:
    """`drift` when any computable score is above its limit, given enough predictions to judge; the reasons
    name each score against its threshold and allowance."""
    if traffic.predictions < min_predictions:
        return "insufficient_traffic", [
            f"{traffic.predictions} predictions in the window, fewer than the {min_predictions} needed to judge"
        ]
    over = [s for s in scores if s.exceeded]
    if not over:
        computed = [s for s in scores if s.value is not None]
        return "no_drift", [f"{len(computed)} scores computed, none above its limit"]
    return "drift", [
        f"{s.name} {s.value:.4f} > {s.limit:.4f} (threshold {s.threshold:g} + sampling allowance "
        f"{s.allowance:.4f}): {s.detail}"
        for s in over
    ]
