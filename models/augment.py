"""Synthetic training rows for the factory: prompts per label, generation, filters, the teacher's verdict.

Why: with ten real examples of an intent the student sees too little text to learn it, and the teacher (which
labels everything the student sees) has knowledge the student never gets to distil. An instruct LLM writes
new utterances from a few real ones; everything it writes passes, in order, cheap filters and then the teacher:

    too_short / too_long   character bounds of the recipe
    pii                    cnai.redact finds something (the generator must not invent customer data either)
    duplicate_exact        same normalized text as a real training row or an earlier kept one
    duplicate_near         character 3-gram Jaccard >= the recipe's bound with a row of the same intent
    test_overlap           shares a word n-gram (n from the recipe) or its whole text with the test split
    teacher_disagrees      the teacher's probability of the intended label is below the bound (recipe
                           `augment_disagreeing: drop`; with `soft` the row is kept as a soft-labelled
                           transfer example: the student learns the teacher's distribution on it)

Each drop is counted by reason; kept rows carry provenance (cnai.data.generated). Prompts and sampling
come from the recipe and are seeded, so the same recipe, data and generator give the same prompts and seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python models/augment.py` (a SageMaker entry): the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hashlib
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cnai.data.dataset import LabeledData, read_labeled
from cnai.data.generated import GeneratedRow, Provenance, read_generated, row_id, summarize, write_generated
from cnai.errors import CnaiError, DataError
from cnai.redact import find_pii
from cnai.text import normalize_text
from models.config import HyperParameters

log = logging.getLogger("cnai.augment")

Message = dict[str, str]

DEFAULT_SYSTEM = "You write realistic customer messages for a bank's support chat."
# {intent}: the label as words; {n}: utterances per turn (per_prompt); one per line when n > 1.
DEFAULT_INSTRUCTION = "Write {n} short message(s) that a bank customer sends to support about: {intent}."


@dataclass(frozen=True)
class Sampling:
    """What one generation call is asked for; part of the prompt's identity (its sha256)."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


# The generator as this module needs it: chat messages and sampling in, the generated text out. train.py
# adapts cnai.generate's Generator to it; tests pass a scripted function.
Complete = Callable[[list[Message], Sampling], str]


@dataclass(frozen=True)
class Recipe:
    """The augmentation settings of a training recipe (HyperParameters' augment_* fields)."""

    per_label: int
    per_prompt: int = 2
    examples: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 48
    min_chars: int = 10
    max_chars: int = 160
    near_duplicate: float = 0.85
    test_ngram: int = 8
    min_confidence: float = 0.5
    disagreeing: str = "soft"
    system: str = DEFAULT_SYSTEM
    instruction: str = DEFAULT_INSTRUCTION
    seed: int = 42


def recipe_from(hp: HyperParameters) -> Recipe:
    """The augment_* hyperparameters of a training recipe as this module's Recipe."""
    return Recipe(
        per_label=hp.augment_per_label,
        per_prompt=hp.augment_per_prompt,
        examples=hp.augment_examples,
        temperature=hp.augment_temperature,
        top_p=hp.augment_top_p,
        max_new_tokens=hp.augment_max_new_tokens,
        min_chars=hp.augment_min_chars,
        max_chars=hp.augment_max_chars,
        near_duplicate=hp.augment_near_duplicate,
        test_ngram=hp.augment_test_ngram,
        min_confidence=hp.augment_min_confidence,
        disagreeing=hp.augment_disagreeing,
        seed=hp.seed,
    )


@dataclass(frozen=True)
class Prompt:
    label: str
    messages: list[Message]
    sampling: Sampling
    sha256: str


@dataclass(frozen=True)
class Candidate:
    """One utterance the generator wrote for an intent, before any filter."""

    text: str
    label: str
    provenance: Provenance


@dataclass
class Outcome:
    """Kept rows and the count of every drop reason; `generated` counts every candidate seen."""

    kept: list[GeneratedRow] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    generated: int = 0
    generation_s: float = 0.0


def humanize(label: str) -> str:
    """`card_arrival` -> `card arrival`: the intent as words the generator can read."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def prompt_sha256(messages: list[Message], sampling: Sampling) -> str:
    canonical = json.dumps({"messages": messages, "sampling": asdict(sampling)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_prompts(train: LabeledData, recipe: Recipe) -> list[Prompt]:
    """ceil(per_label / per_prompt) prompts per label, each showing `examples` of its real texts.

    The examples are shown as earlier turns of the conversation (the request, then real utterances as the
    assistant's answers, `per_prompt` per turn), and the request comes once more: a 135M-parameter model
    continues such a pattern far better than it follows a written instruction. Probed on BANKING77: asked
    in one turn to "write five more like these", SmolLM2-135M described the intent ("Customers list the
    requests they gave to the bank") or repeated its name; in turns, it wrote customer messages.
    The examples and the sampling seed of prompt j of label i are drawn from (recipe.seed, i, j) alone, so
    adding a label or a prompt leaves the others unchanged.
    """
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(train.texts, train.labels, strict=True):
        by_label[label].append(text)
    prompts = []
    count = math.ceil(recipe.per_label / recipe.per_prompt) if recipe.per_label > 0 else 0
    for i, label in enumerate(sorted(by_label)):
        texts = by_label[label]
        for j in range(count):
            rng = np.random.default_rng([recipe.seed, i, j])
            shown = [texts[k] for k in rng.choice(len(texts), size=min(recipe.examples, len(texts)), replace=False)]
            ask = recipe.instruction.format(intent=humanize(label), n=recipe.per_prompt)
            messages = [{"role": "system", "content": recipe.system}]
            for start in range(0, len(shown), recipe.per_prompt):
                answer = "\n".join(normalize_text(t) for t in shown[start : start + recipe.per_prompt])
                messages += [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}]
            messages.append({"role": "user", "content": ask})
            sampling = Sampling(recipe.temperature, recipe.top_p, recipe.max_new_tokens, int(rng.integers(2**31)))
            prompts.append(Prompt(label, messages, sampling, prompt_sha256(messages, sampling)))
    return prompts


_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,2}[.):]|message\s*\d*\s*:)\s*", re.IGNORECASE)
_EMPHASIS = re.compile(r"\*\*|__")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


def parse_candidates(output: str) -> list[str]:
    """The utterances in one generation: one per line, bullets, numbering and surrounding quotes removed.

    A line that ends with ':' introduces a list ("Here are five messages:") and is not an utterance.
    """
    found = []
    for line in output.splitlines():
        text = _BULLET.sub("", _EMPHASIS.sub("", normalize_text(line))).strip().strip(_QUOTES).strip()
        if text and not text.endswith(":") and not re.fullmatch(r"message\s*\d*", text, re.IGNORECASE):
            found.append(text)
    return found


def generate(
    prompts: Sequence[Prompt], complete: Complete, generator: str, limit: int
) -> tuple[list[Candidate], float]:
    """Run every prompt; keep at most `limit` candidates per label (the recipe's per_label). Seconds spent."""
    started = time.perf_counter()
    per_label: Counter[str] = Counter()
    candidates: list[Candidate] = []
    for done, prompt in enumerate(prompts):
        if done and done % 50 == 0:  # generation is the slow part: say where it is
            log.info("generation: %d/%d prompts, %d candidates, %.0f s", done, len(prompts), len(candidates),
                     time.perf_counter() - started)  # fmt: skip
        if per_label[prompt.label] >= limit:
            continue
        provenance = Provenance(generator=generator, prompt_sha256=prompt.sha256, seed=prompt.sampling.seed)
        for text in parse_candidates(complete(prompt.messages, prompt.sampling)):
            if per_label[prompt.label] >= limit:
                break
            candidates.append(Candidate(text, prompt.label, provenance))
            per_label[prompt.label] += 1
    return candidates, time.perf_counter() - started


_PUNCT = re.compile(r"[^\w\s]")


def canonical(text: str) -> str:
    """The text as duplicate checks compare it: normalized, case-folded, punctuation removed."""
    return " ".join(_PUNCT.sub(" ", normalize_text(text).casefold()).split())


def char_ngrams(text: str, n: int = 3) -> frozenset[str]:
    padded = f" {text} "
    return frozenset(padded[i : i + n] for i in range(max(1, len(padded) - n + 1)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class CheapFilters:
    """Every filter but the teacher's, in the order of the module docstring; remembers what it kept.

    Why the test n-gram is long (8 words by default): on BANKING77, 51% of the real training texts share a
    5-word run with the test split and 4.6% an 8-word one; a short n would drop most natural utterances, an
    8-word run shared with a test text is a copy.
    """

    def __init__(self, train: LabeledData, test_texts: Sequence[str], recipe: Recipe) -> None:
        self.recipe = recipe
        self.seen = {canonical(t) for t in train.texts}
        self.by_label: dict[str, list[frozenset[str]]] = defaultdict(list)
        for text, label in zip(train.texts, train.labels, strict=True):
            self.by_label[label].append(char_ngrams(canonical(text)))
        test = [canonical(t) for t in test_texts]
        self.test_texts = set(test)
        self.test_ngrams: set[tuple[str, ...]] = set()
        for text in test:
            self.test_ngrams |= word_ngrams(text, recipe.test_ngram)

    def reason(self, text: str, label: str) -> str | None:
        """Why the candidate is dropped, or None when it passes (and is then remembered for later checks)."""
        if len(text) < self.recipe.min_chars:
            return "too_short"
        if len(text) > self.recipe.max_chars:
            return "too_long"
        if find_pii(text):
            return "pii"
        key = canonical(text)
        if key in self.seen:
            return "duplicate_exact"
        grams = char_ngrams(key)
        if any(jaccard(grams, other) >= self.recipe.near_duplicate for other in self.by_label[label]):
            return "duplicate_near"
        if key in self.test_texts or word_ngrams(key, self.recipe.test_ngram) & self.test_ngrams:
            return "test_overlap"
        self.seen.add(key)
        self.by_label[label].append(grams)
        return None


def judge(
    candidates: Sequence[Candidate], probabilities: np.ndarray, labels: Sequence[str], recipe: Recipe
) -> tuple[list[GeneratedRow], Counter[str]]:
    """The teacher's verdict on candidates that passed the cheap filters (`probabilities`: one row each).

    Kept as `agrees` when the teacher gives the intended label at least `min_confidence`; otherwise kept as
    `soft` (its hard label for the student is the teacher's own top label) or dropped, as the recipe says.
    """
    if probabilities.shape != (len(candidates), len(labels)):
        raise ValueError(f"probabilities: shape {probabilities.shape}, expected {(len(candidates), len(labels))}")
    index = {label: i for i, label in enumerate(labels)}
    kept: list[GeneratedRow] = []
    dropped: Counter[str] = Counter()
    for candidate, probs in zip(candidates, probabilities, strict=True):
        confidence = float(probs[index[candidate.label]])
        if confidence >= recipe.min_confidence:
            verdict, train_label = "agrees", candidate.label
        elif recipe.disagreeing == "soft":
            verdict, train_label = "soft", labels[int(probs.argmax())]
        else:
            dropped["teacher_disagrees"] += 1
            continue
        kept.append(
            GeneratedRow(
                id=row_id(candidate.provenance, candidate.text),
                text=candidate.text,
                label=candidate.label,
                train_label=train_label,
                verdict=verdict,
                teacher_confidence=min(1.0, max(0.0, confidence)),
                provenance=candidate.provenance,
            )
        )
    return kept, dropped


def augment(
    train: LabeledData,
    test_texts: Sequence[str],
    labels: Sequence[str],
    recipe: Recipe,
    complete: Complete,
    generator: str,
    teacher_probabilities: Callable[[list[str]], np.ndarray],
) -> Outcome:
    """The whole stage: prompts -> generation -> cheap filters -> teacher's verdict, every drop counted."""
    candidates, seconds = generate(build_prompts(train, recipe), complete, generator, recipe.per_label)
    return select(candidates, seconds, train, test_texts, labels, recipe, teacher_probabilities)


def select(
    candidates: Sequence[Candidate],
    generation_s: float,
    train: LabeledData,
    test_texts: Sequence[str],
    labels: Sequence[str],
    recipe: Recipe,
    teacher_probabilities: Callable[[list[str]], np.ndarray],
) -> Outcome:
    """Cheap filters, then the teacher's verdict on what passed them (one batch)."""
    outcome = Outcome(generated=len(candidates), generation_s=generation_s)
    filters = CheapFilters(train, test_texts, recipe)
    passed = []
    for candidate in candidates:
        reason = filters.reason(candidate.text, candidate.label)
        if reason is None:
            passed.append(candidate)
        else:
            outcome.dropped[reason] += 1
    if passed:
        kept, dropped = judge(passed, teacher_probabilities([c.text for c in passed]), labels, recipe)
        outcome.kept = kept
        outcome.dropped.update(dropped)
    return outcome


# What decides the candidates (not the filters or the teacher): a change here means generating again.
GENERATION_FIELDS = ("augment_per_label", "augment_generator", "augment_per_prompt", "augment_examples",
                     "augment_temperature", "augment_top_p", "augment_max_new_tokens", "seed", "dev_fraction",
                     "train_limit", "text_column", "label_column")  # fmt: skip


def generation_key(hp: HyperParameters, train: LabeledData) -> str:
    values = {name: getattr(hp, name) for name in GENERATION_FIELDS}
    return hashlib.sha256(json.dumps([values, train.sha256], sort_keys=True).encode()).hexdigest()


def write_candidates(path: Path, candidates: Sequence[Candidate], generation_s: float, generator: str) -> None:
    body = {
        "generator": generator,
        "generation_s": generation_s,
        "candidates": [{"text": c.text, "label": c.label, "provenance": c.provenance.model_dump()} for c in candidates],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_candidates(path: Path) -> tuple[list[Candidate], float, str]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        candidates = [
            Candidate(c["text"], c["label"], Provenance.model_validate(c["provenance"])) for c in body["candidates"]
        ]
        return candidates, float(body["generation_s"]), str(body["generator"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(str(path), f"not a candidates file of this version ({exc})") from None


def candidates_name(hp: HyperParameters, train: LabeledData) -> str:
    return f"candidates-{generation_key(hp, train)[:16]}.json"


def given_candidates(hp: HyperParameters, train: LabeledData, folder: Path) -> Path:
    """The candidates file of this recipe and data in `folder` (the workflow's `candidates` channel). Raises
    DataError naming what the folder holds when it is missing: candidates of another recipe or data must not be
    judged as this run's, and generating here instead would make the generation job pointless."""
    path = folder / candidates_name(hp, train)
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []
        raise DataError(
            str(folder),
            f"no {path.name} (the candidates of this recipe and training data); found {found or 'nothing'}: "
            "the generation job ran with other augment_* settings, data selection or generator",
        )
    return path


def candidates_for(
    hp: HyperParameters, train: LabeledData, work: Path, given: Path | None = None
) -> tuple[list[Candidate], float, str]:
    """The recipe's candidates: `given` (a file models/augment.py wrote ahead, e.g. in the workflow's
    GenerateSyntheticData job), else read from `work` when an earlier run generated them, else generated now and
    kept there. Generation is the slow part and needs no teacher, so it can run ahead of training, and a job
    restarted after it never repeats it."""
    if given is not None:
        return read_candidates(given)
    path = work / candidates_name(hp, train)
    if path.is_file():
        return read_candidates(path)
    complete, identity = load_complete(hp.augment_generator)
    candidates, seconds = generate(build_prompts(train, recipe_from(hp)), complete, identity, hp.augment_per_label)
    write_candidates(path, candidates, seconds, identity)
    return candidates, seconds, identity


def load_complete(uri: str) -> tuple[Complete, str]:
    """cnai.generate's generator behind this module's Complete, and its identity for the provenance.

    Imported here, not at module top: only a run that augments needs the generator and its runtime.
    """
    from cnai.generate import GenerationParams, load_generator

    generator = load_generator(uri)

    def complete(messages: list[Message], sampling: Sampling) -> str:
        params = GenerationParams(
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
        )
        generation = generator.generate(messages, params)
        return without_cut_line(generation.text, generation.finish_reason == "length")

    return complete, str(generator.identity)


def without_cut_line(text: str, cut: bool) -> str:
    """A generation stopped by max_new_tokens ends mid-utterance ("I'm having a"): drop that last line."""
    if not cut:
        return text
    lines = text.rstrip().splitlines()
    return "\n".join(lines[:-1])


def as_labeled(rows: Sequence[GeneratedRow], source: str, sha256: str) -> LabeledData:
    """Kept rows as training data: the student's hard label is `train_label` (the teacher's, for soft rows)."""
    return LabeledData(
        [r.text for r in rows],
        [r.train_label for r in rows],
        source,
        sha256,
        [(source, i) for i in range(1, len(rows) + 1)],
    )


def refit_rows(generated: LabeledData, which: str) -> LabeledData:
    """The generated rows the teacher's self-training refit learns from (recipe `augment_refit_rows`).

    `agreeing`: rows whose intended label the teacher gave with confidence (the label is the generator's,
    confirmed); `kept`: also the soft rows, labelled with the teacher's own top label (plain pseudo-labels).
    Read back from the kept file, so the verdict is the one recorded with the rows' provenance.
    """
    if which not in ("agreeing", "kept"):
        raise ValueError(f"augment_refit_rows: {which!r} is not one of agreeing, kept")
    rows, sha = read_generated(Path(generated.source))
    chosen = [r for r in rows if which == "kept" or r.verdict == "agrees"]
    return as_labeled(chosen, generated.source, hashlib.sha256(f"{sha}:{which}".encode()).hexdigest())


def concat(real: LabeledData, generated: LabeledData) -> LabeledData:
    """Real rows first, then generated ones; the hash names both sources, so caches keyed on it see the change."""
    sha = hashlib.sha256(f"{real.sha256}+{generated.sha256}".encode()).hexdigest()
    return LabeledData(
        real.texts + generated.texts,
        real.labels + generated.labels,
        f"{real.source}+{generated.source}",
        sha,
        real.where + generated.where,
    )


def stage(
    hp: HyperParameters,
    train: LabeledData,
    test: LabeledData,
    labels: Sequence[str],
    teacher_probabilities: Callable[[list[str]], np.ndarray],
    work: Path,
    key: str,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    candidates: Path | None = None,
) -> tuple[LabeledData, dict[str, Any]]:
    """models/train.py's augmentation step: generate and judge once (main process), cache the kept rows under
    `key` (the recipe, the data and the teacher that judged them), and hand every process the same rows.

    A restarted job (spot reclaim) finds the cached file and does not generate again; `candidates` (a file
    models/augment.py generated ahead) is judged instead of generating.
    """
    path = work / f"generated-{key[:16]}.jsonl.gz"
    summary_path = path.with_name(path.name.removesuffix(".jsonl.gz") + ".json")
    if is_main and not summary_path.is_file():
        generated, seconds, identity = candidates_for(hp, train, work, candidates)
        outcome = select(generated, seconds, train, test.texts, labels, recipe_from(hp), teacher_probabilities)
        sha = write_generated(path, outcome.kept)
        summary = summarize(outcome.kept, outcome.generated, dict(outcome.dropped), sha, identity)
        summary["generation_s"] = round(outcome.generation_s, 3)
        summary["texts_per_s"] = round(outcome.generated / outcome.generation_s, 3) if outcome.generation_s else 0.0
        tmp = summary_path.with_name(summary_path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        tmp.replace(summary_path)
    barrier()
    rows, sha = read_generated(path)
    summary = json.loads(summary_path.read_text())
    if summary["sha256"] != sha:
        raise DataError(str(path), f"sha256 {sha} differs from its summary's {summary['sha256']}")
    log.info(
        "augmentation: %d generated in %.0f s, %d kept (%d soft), dropped %s",
        summary["generated_texts"],
        summary["generation_s"],
        summary["kept_texts"],
        summary["kept_soft"],
        summary["dropped"],
    )
    return as_labeled(rows, str(path), sha), summary


def main(argv: list[str] | None = None) -> int:
    """Generate the candidates of a recipe ahead of its training run (same data selection as models/train.py:
    train_limit, then the dev split), into the checkpoint directory:

        python -m models.augment --train DATA --test DATA --checkpoint-dir DIR [--augment_* ...]

    It is also a SageMaker entry point (the training workflow's GenerateSyntheticData job runs
    `models/augment.py` under the same contract as train.py: SM_CHANNEL_TRAIN/TEST, SM_HPS, /opt/ml/checkpoints,
    which SageMaker syncs to S3, where TrainAndDistill reads it as its `candidates` channel). A copy goes to the
    output data directory, kept with the job's output. Exit codes: 0 done, 2 bad input (the message names it).
    """
    import shutil

    from models.config import ConfigError, parse
    from models.data import split_dev, stratified_indices, subset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse(argv)
        hp = cfg.hp
        if hp.augment_per_label == 0:
            raise ConfigError("augment_per_label: 0, nothing to generate (give --augment_per_label N)")
        data = read_labeled(cfg.paths.train, hp.text_column, hp.label_column)
        if hp.train_limit is not None:
            data = subset(data, stratified_indices(data.labels, hp.train_limit, hp.seed))
        train, _ = split_dev(data, hp.dev_fraction, hp.seed)
        candidates, seconds, identity = candidates_for(hp, train, cfg.paths.checkpoint_dir)
    except CnaiError as exc:
        log.error("%s", exc)
        return 2
    name = candidates_name(hp, train)
    cfg.paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg.paths.checkpoint_dir / name, cfg.paths.output_data_dir / name)
    log.info("%d candidates from %s in %.0f s: %s", len(candidates), identity, seconds, cfg.paths.checkpoint_dir / name)
    # the job's metric line (GENERATION_METRIC_DEFINITIONS in infra/constructs/training_workflow.py)
    rate = len(candidates) / seconds if seconds > 0 else 0.0
    print(f"generation_candidates={len(candidates)} generation_seconds={seconds:.3f} generation_texts_per_s={rate:.4g}",
          flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
