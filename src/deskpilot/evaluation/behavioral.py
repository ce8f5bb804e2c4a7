"""Behavioral test suites (CheckList-style) that a model must pass as part of the acceptance gate.

Three test types: minimum functionality (``mft``: a clear message gets its obvious intent), invariance
(``inv``: a harmless rewrite keeps the intent) and directional expectations (``dir``: a meaningful change
moves the answer the expected way). Suites are YAML files the operator extends::

    version: 1
    generated:                # optional: INV tests built from a seeded sample of the evaluation texts
      sample: 200             # how many texts (default 200; fewer if there are fewer)
      perturbations: [typo, casing, punctuation, entities]   # default: all four
    tests:
      - name: card arrival basics          # unique; "generated: ..." names are reserved
        type: mft
        description: optional free text
        cases:
          - {text: "My new card still hasn't come", expect: card_arrival}
      - name: greetings do not change the intent
        type: inv                          # each variant must get the same intent as text
        cases:
          - {text: "I forgot my passcode", variants: ["hi, I forgot my passcode", "..."]}
      - name: facts that matter
        type: dir                          # one expectation per case:
        cases:
          - {text: "What's the weather in Paris?", expect_route: human}       # or auto
          - {text: "...", variant: "...", expect: lower_confidence}          # or higher_confidence
          - {text: "...", variant: "...", expect_intent: lost_or_stolen_card}  # variant gets it, text not

Every check counts once: an ``inv`` case with three variants is three checks. A check whose expected intent
is not among the model's classes is skipped (counted, never failed), so one suite serves any model. Pass
rates are passed / (total - skipped) per test and per type; a type with nothing evaluated has no rate.
Every mistake in a file is a :class:`SuiteError` naming the file and line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np
from yaml.nodes import Node

from deskpilot.domain import Route
from deskpilot.errors import SuiteError
from deskpilot.evaluation.perturb import PERTURBATIONS
from deskpilot.evaluation.yaml_reader import YamlReader

SUITE_VERSION: Final = 1
DEFAULT_SAMPLE: Final = 200
MAX_FAILURE_EXAMPLES: Final = 5
GENERATED_PREFIX: Final = "generated: "


class BehaviorType(StrEnum):
    MFT = "mft"
    INV = "inv"
    DIR = "dir"


class Expectation(StrEnum):
    INTENT = "intent"  # text gets `expected`
    SAME_INTENT = "same_intent"  # variant gets the text's intent
    MOVES_TO = "moves_to"  # variant gets `expected`, text does not
    ROUTE = "route"  # text is routed `expected`
    LOWER_CONFIDENCE = "lower_confidence"  # confidence(variant) < confidence(text)
    HIGHER_CONFIDENCE = "higher_confidence"


_INTENT_EXPECTATIONS: Final = frozenset({Expectation.INTENT, Expectation.MOVES_TO})
_CASE_KEYS: Final = {
    BehaviorType.MFT: frozenset({"text", "expect"}),
    BehaviorType.INV: frozenset({"text", "variants"}),
    BehaviorType.DIR: frozenset({"text", "variant", "expect", "expect_intent", "expect_route"}),
}


@dataclass(frozen=True, slots=True)
class Check:
    """One scored expectation; ``line`` is where its case starts in the suite file (0 when generated)."""

    expectation: Expectation
    text: str
    variant: str | None = None
    expected: str | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class BehavioralTest:
    name: str
    type: BehaviorType
    checks: tuple[Check, ...]
    description: str = ""
    line: int = 0
    generated: bool = False


@dataclass(frozen=True, slots=True)
class GeneratedSpec:
    sample: int = DEFAULT_SAMPLE
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS)


@dataclass(frozen=True, slots=True)
class BehavioralSuite:
    source: str
    tests: tuple[BehavioralTest, ...] = ()
    generated: GeneratedSpec | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """A model's answers for a batch of texts, in input order."""

    intents: list[str]
    confidence: np.ndarray
    auto: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.intents) == len(self.confidence) == len(self.auto):
            raise ValueError(
                f"BatchOutcome lengths differ: {len(self.intents)} intents, "
                f"{len(self.confidence)} confidences, {len(self.auto)} routes"
            )


Predictor = Callable[[Sequence[str]], BatchOutcome]


@dataclass(frozen=True, slots=True)
class Failure:
    text: str
    variant: str | None
    expected: str
    got: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BehavioralTestResult:
    name: str
    type: BehaviorType
    total: int
    passed: int
    skipped: int
    failures: tuple[Failure, ...] = ()  # the first MAX_FAILURE_EXAMPLES, in suite order
    generated: bool = False

    @property
    def failed(self) -> int:
        return self.total - self.skipped - self.passed

    @property
    def pass_rate(self) -> float | None:
        scored = self.total - self.skipped
        return self.passed / scored if scored else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "type": str(self.type), "failed": self.failed, "pass_rate": self.pass_rate}


@dataclass(frozen=True)
class BehavioralResult:
    source: str
    seed: int
    tests: tuple[BehavioralTestResult, ...]
    pass_rates: dict[str, float]  # by test type; absent when the type had no scored check

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seed": self.seed,
            "pass_rates": dict(self.pass_rates),
            "tests": [t.to_dict() for t in self.tests],
        }


def run_suite(
    suite: BehavioralSuite,
    predict: Predictor,
    *,
    classes: Sequence[str],
    sample_texts: Sequence[str] = (),
    seed: int = 0,
) -> BehavioralResult:
    """Score every test with one call to ``predict`` over the distinct texts of all tests.

    ``sample_texts`` (evaluation texts, in a stable order) feed the generated tests; the same texts, suite
    and seed give the same result.
    """
    tests = [*suite.tests, *generated_tests(suite.generated, sample_texts, seed=seed)]
    texts = list(
        dict.fromkeys(t for test in tests for c in test.checks for t in (c.text, c.variant) if t is not None)
    )
    answers: dict[str, _Answer] = {}
    if texts:
        outcome = predict(texts)
        if len(outcome.intents) != len(texts):
            raise ValueError(f"the predictor answered {len(outcome.intents)} of {len(texts)} texts")
        answers = {
            text: _Answer(intent, float(conf), bool(auto))
            for text, intent, conf, auto in zip(
                texts, outcome.intents, outcome.confidence, outcome.auto, strict=True
            )
        }
    known = frozenset(classes)
    results = tuple(_score(test, answers, known) for test in tests)
    rates: dict[str, float] = {}
    for kind in BehaviorType:
        of_kind = [r for r in results if r.type is kind]
        scored = sum(r.total - r.skipped for r in of_kind)
        if scored:
            rates[str(kind)] = sum(r.passed for r in of_kind) / scored
    return BehavioralResult(source=suite.source, seed=seed, tests=results, pass_rates=rates)


def generated_tests(
    spec: GeneratedSpec | None, sample_texts: Sequence[str], *, seed: int
) -> list[BehavioralTest]:
    """One INV test per perturbation over a seeded sample; texts a perturbation does not apply to drop out."""
    if spec is None:
        return []
    pool = list(dict.fromkeys(t for t in sample_texts if t.strip()))
    chosen = random.Random(seed).sample(pool, min(spec.sample, len(pool)))
    tests = []
    for name in spec.perturbations:
        perturb, rng = PERTURBATIONS[name], random.Random(f"{seed}:{name}")  # independent of the others
        checks = []
        for text in chosen:
            variant = perturb(text, rng)
            if variant is not None and variant != text:
                checks.append(Check(Expectation.SAME_INTENT, text, variant))
        tests.append(BehavioralTest(GENERATED_PREFIX + name, BehaviorType.INV, tuple(checks), generated=True))
    return tests


@dataclass(frozen=True, slots=True)
class _Answer:
    intent: str
    confidence: float
    auto: bool

    @property
    def route(self) -> str:
        return str(Route.AUTO if self.auto else Route.HUMAN)


def _score(test: BehavioralTest, answers: dict[str, _Answer], known: frozenset[str]) -> BehavioralTestResult:
    passed = skipped = 0
    failures: list[Failure] = []
    for check in test.checks:
        if check.expectation in _INTENT_EXPECTATIONS and check.expected not in known:
            skipped += 1
            continue
        failure = _judge(check, answers)
        if failure is None:
            passed += 1
        elif len(failures) < MAX_FAILURE_EXAMPLES:
            failures.append(failure)
    return BehavioralTestResult(
        test.name, test.type, len(test.checks), passed, skipped, tuple(failures), test.generated
    )


def _judge(check: Check, answers: dict[str, _Answer]) -> Failure | None:
    """``None`` when the check passes, else what was expected and what the model did."""
    text = answers[check.text]
    variant = answers[check.variant] if check.variant is not None else None
    expected, got = str(check.expected), text.intent
    match check.expectation:
        case Expectation.INTENT:
            ok = text.intent == expected
        case Expectation.ROUTE:
            ok, got = text.route == expected, f"{text.route} ({text.intent}, {text.confidence:.3f})"
        case _:
            assert variant is not None
            if check.expectation is Expectation.SAME_INTENT:
                ok, expected, got = variant.intent == text.intent, text.intent, variant.intent
            elif check.expectation is Expectation.MOVES_TO:
                ok = variant.intent == expected != text.intent
                expected, got = f"not {expected} -> {expected}", f"{text.intent} -> {variant.intent}"
            else:
                lower = check.expectation is Expectation.LOWER_CONFIDENCE
                ok = variant.confidence < text.confidence if lower else variant.confidence > text.confidence
                expected = f"{'below' if lower else 'above'} {text.confidence:.3f}"
                got = f"{variant.confidence:.3f}"
    return None if ok else Failure(check.text, check.variant, expected, got)


def load_suite(path: Path) -> BehavioralSuite:
    """The suite at ``path``; any mistake is a :class:`SuiteError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SuiteError(f"{path}: behavioral suite not found", details={"file": str(path)}) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite: {exc}", details={"file": str(path)}) from exc
    return parse_suite(text, source=str(path))


def parse_suite(text: str, *, source: str) -> BehavioralSuite:
    reader = YamlReader(source, SuiteError)
    root = reader.compose(text, "the suite")
    top = reader.mapping(root, "the suite", allowed={"version", "generated", "tests"})
    if "version" not in top:
        reader.fail(root, "missing 'version' (use version: 1)")
    version = reader.scalar(top["version"], "version")
    if isinstance(version, bool) or version != SUITE_VERSION:
        reader.fail(top["version"], f"unknown suite version; only version {SUITE_VERSION} exists")
    generated = _generated(reader, top["generated"]) if "generated" in top else None
    tests: list[BehavioralTest] = []
    if "tests" in top:
        names: set[str] = set()
        for node in reader.sequence(top["tests"], "tests"):
            test = _test(reader, node)
            if test.name in names:
                reader.fail(node, f"test name {test.name!r} is used twice")
            if test.name.startswith(GENERATED_PREFIX):
                reader.fail(
                    node, f"test names starting {GENERATED_PREFIX!r} are reserved for generated tests"
                )
            names.add(test.name)
            tests.append(test)
    if not tests and generated is None:
        reader.fail(root, "the suite has no tests and no generated section")
    return BehavioralSuite(source=source, tests=tuple(tests), generated=generated)


def _generated(reader: YamlReader, node: Node) -> GeneratedSpec:
    fields = reader.mapping(node, "generated", allowed={"sample", "perturbations"})
    sample = DEFAULT_SAMPLE
    if "sample" in fields:
        value = reader.scalar(fields["sample"], "sample")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            reader.fail(fields["sample"], f"sample must be a whole number of at least 1, not {value!r}")
        sample = value
    names = tuple(PERTURBATIONS)
    if "perturbations" in fields:
        chosen = []
        for item in reader.sequence(fields["perturbations"], "perturbations"):
            name = reader.text(item, "a perturbation")
            if name not in PERTURBATIONS or name in chosen:
                reader.fail(item, f"unknown or repeated perturbation {name!r}; known: {', '.join(names)}")
            chosen.append(name)
        names = tuple(chosen)
    return GeneratedSpec(sample=sample, perturbations=names)


def _test(reader: YamlReader, node: Node) -> BehavioralTest:
    fields = reader.mapping(node, "a test", allowed={"name", "type", "description", "cases"})
    for required in ("name", "type", "cases"):
        if required not in fields:
            reader.fail(node, f"a test needs {required!r}")
    name = reader.text(fields["name"], "name")
    kind_name = reader.text(fields["type"], "type")
    if kind_name not in set(BehaviorType):
        reader.fail(fields["type"], f"unknown test type {kind_name!r}; use mft, inv or dir")
    kind = BehaviorType(kind_name)
    description = reader.text(fields["description"], "description") if "description" in fields else ""
    checks = [c for case in reader.sequence(fields["cases"], "cases") for c in _case(reader, case, kind)]
    return BehavioralTest(name, kind, tuple(checks), description, line=reader.line(node))


def _case(reader: YamlReader, node: Node, kind: BehaviorType) -> list[Check]:
    fields = reader.mapping(node, f"a {kind} case", allowed=_CASE_KEYS[kind])
    if "text" not in fields:
        reader.fail(node, "a case needs 'text'")
    text, line = reader.text(fields["text"], "text"), reader.line(node)
    if kind is BehaviorType.MFT:
        if "expect" not in fields:
            reader.fail(node, "an mft case needs 'expect' (the intent)")
        return [Check(Expectation.INTENT, text, None, reader.text(fields["expect"], "expect"), line)]
    if kind is BehaviorType.INV:
        if "variants" not in fields:
            reader.fail(node, "an inv case needs 'variants' (a list of rewrites)")
        checks = []
        for item in reader.sequence(fields["variants"], "variants"):
            variant = reader.text(item, "a variant")
            if variant == text:
                reader.fail(item, "a variant must differ from its text")
            checks.append(Check(Expectation.SAME_INTENT, text, variant, None, line))
        return checks
    keys = set(fields) - {"text"}
    if keys == {"expect_route"}:
        route = reader.text(fields["expect_route"], "expect_route")
        if route not in set(Route):
            reader.fail(fields["expect_route"], f"expect_route must be auto or human, not {route!r}")
        return [Check(Expectation.ROUTE, text, None, route, line)]
    if keys not in ({"variant", "expect"}, {"variant", "expect_intent"}):
        reader.fail(node, "a dir case needs expect_route, or variant with one of expect or expect_intent")
    variant = reader.text(fields["variant"], "variant")
    if "expect_intent" in fields:
        intent = reader.text(fields["expect_intent"], "expect_intent")
        return [Check(Expectation.MOVES_TO, text, variant, intent, line)]
    expect = reader.text(fields["expect"], "expect")
    if expect not in {Expectation.LOWER_CONFIDENCE, Expectation.HIGHER_CONFIDENCE}:
        reader.fail(fields["expect"], f"expect must be lower_confidence or higher_confidence, not {expect!r}")
    return [Check(Expectation(expect), text, variant, None, line)]
