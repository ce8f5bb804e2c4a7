"""PII detection: DeskPilot's redactor against Microsoft Presidio on the hand-written evaluation set.

    .venv/bin/python bench/pii_bench.py

Presidio runs on a blank spaCy English pipeline (no model download; its pattern and phone recognizers need
only tokens), with its phone recognizer given the same regions and leniency as ours. Only the kinds both
detect are compared: Presidio has no notion of URL credentials (its URL recognizer marks host names), so
CREDENTIALS is reported for DeskPilot alone. Both sides are scored on exact spans with
``deskpilot.data.pii_scoring``; speed is detection only (``find`` vs ``analyze``), one thread, after a
warm-up pass, repeating the same messages for at least three seconds.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

# Single-threaded numerics, and tldextract (used by Presidio's e-mail check) reads its bundled suffix list
# instead of fetching one: the benchmark must run offline and the same way twice.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from deskpilot.data.pii import BUILTIN_KINDS, DEFAULT_PHONE_REGIONS, PiiRedactor, PiiSpan  # noqa: E402
from deskpilot.data.pii_scoring import OVERALL, EvalCase, KindScore, load_cases, score_spans  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "data" / "pii_eval" / "cases.jsonl"
BANKING77 = ROOT / "data" / "banking77" / "train.csv"

# Presidio entity type -> DeskPilot kind, for the kinds both support.
PRESIDIO_TO_OURS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
}
SHARED_KINDS = tuple(PRESIDIO_TO_OURS.values())
Detector = Callable[[str], list[PiiSpan]]


def build_presidio(phone_regions: Sequence[str] | None) -> Detector:
    """Presidio's analyzer on ``spacy.blank("en")``, returning non-overlapping spans in our kinds."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """Tokenizer only: no model to download, which is all the pattern recognizers need."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]  # the base class types it None

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    if phone_regions is not None:
        analyzer.registry.remove_recognizer("PhoneRecognizer")
        analyzer.registry.add_recognizer(PhoneRecognizer(supported_regions=tuple(phone_regions), leniency=1))
    entities = list(PRESIDIO_TO_OURS)

    def detect(text: str) -> list[PiiSpan]:
        results: list[RecognizerResult] = analyzer.analyze(text=text, language="en", entities=entities)
        # Resolve overlaps as a redactor would: higher score first, then the longer span.
        kept: list[PiiSpan] = []
        for r in sorted(results, key=lambda r: (-r.score, r.start - r.end, r.start)):
            if all(r.end <= k.start or k.end <= r.start for k in kept):
                kept.append(PiiSpan(PRESIDIO_TO_OURS[r.entity_type], r.start, r.end))
        return sorted(kept, key=lambda s: s.start)

    return detect


def throughput(
    detectors: dict[str, Detector], texts: Sequence[str], min_seconds: float, rounds: int = 3
) -> dict[str, float]:
    """Messages per second for each detector: best of ``rounds`` alternating timed runs after a warm-up.

    Alternating and keeping the best run makes the ratio robust to other work on a shared machine; each
    detector still runs for ``min_seconds`` in all.
    """
    best = dict.fromkeys(detectors, 0.0)
    for detect in detectors.values():
        for text in texts:
            detect(text)
    for _ in range(rounds):
        for name, detect in detectors.items():
            done, start = 0, time.perf_counter()
            while True:
                for text in texts:
                    detect(text)
                done += len(texts)
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds / rounds:
                    break
            best[name] = max(best[name], done / elapsed)
    return best


def hard_negative_hits(cases: Sequence[EvalCase], predictions: Sequence[list[PiiSpan]]) -> tuple[int, int]:
    """Hard-negative messages with at least one detection, and detections on them in all."""
    hits = [p for c, p in zip(cases, predictions, strict=True) if not c.entities]
    return sum(1 for p in hits if p), sum(len(p) for p in hits)


def banking77_sample(n: int) -> list[str]:
    """Every k-th Banking77 training message: typical support text, mostly without PII."""
    with BANKING77.open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", type=float, default=3.0, help="timed run per detector and text set")
    parser.add_argument(
        "--typical", type=int, default=1000, help="Banking77 messages for the second speed row"
    )
    args = parser.parse_args(argv)

    cases = load_cases(CASES)
    gold = [c.entities for c in cases]
    texts = [c.text for c in cases]
    ours: Detector = PiiRedactor().find
    presidio = build_presidio(DEFAULT_PHONE_REGIONS)
    presidio_default = build_presidio(None)

    pred_ours = [ours(t) for t in texts]
    pred_presidio = [presidio(t) for t in texts]
    s_ours = score_spans(gold, pred_ours, kinds=SHARED_KINDS)
    s_pres = score_spans(gold, pred_presidio, kinds=SHARED_KINDS)
    s_default = score_spans(gold, [presidio_default(t) for t in texts], kinds=SHARED_KINDS)
    s_ours_all = score_spans(gold, pred_ours)
    neg_ours = hard_negative_hits(cases, [[s for s in p if s.kind in SHARED_KINDS] for p in pred_ours])
    neg_pres = hard_negative_hits(cases, pred_presidio)
    typical = banking77_sample(args.typical)
    detectors = {"ours": ours, "presidio": presidio}
    speed: dict[str, tuple[float, float]] = {}
    for key, sample in (("eval", texts), ("typical", typical)):
        rates = throughput(detectors, sample, args.min_seconds)
        speed[key] = (rates["ours"], rates["presidio"])

    n_neg = sum(1 for c in cases if not c.entities)
    rows: list[tuple[str, str, str, str]] = []

    def prf(label: str, a: KindScore, b: KindScore) -> None:
        rows.append(
            (
                f"{label} P / R / F1 (n={a.support})",
                f"{a.precision:.3f} / {a.recall:.3f} / {a.f1:.3f}",
                f"{b.precision:.3f} / {b.recall:.3f} / {b.f1:.3f}",
                f"{ratio(a.precision, b.precision)} / {ratio(a.recall, b.recall)} / {ratio(a.f1, b.f1)}",
            )
        )

    for kind in SHARED_KINDS:
        prf(kind, s_ours[kind], s_pres[kind])
    prf("**overall (shared kinds)**", s_ours[OVERALL], s_pres[OVERALL])
    held = [i for i, c in enumerate(cases) if c.category.startswith("holdout")]
    h_ours, h_pres = (
        score_spans([gold[i] for i in held], [pred[i] for i in held], kinds=SHARED_KINDS)[OVERALL]
        for pred in (pred_ours, pred_presidio)
    )
    prf(f"overall, holdout subset ({len(held)} msgs)", h_ours, h_pres)
    rows.append(
        (
            f"hard negatives with any detection (of {n_neg})",
            str(neg_ours[0]),
            str(neg_pres[0]),
            ratio(neg_ours[0], neg_pres[0]),
        )
    )
    rows.append(
        ("detections on hard negatives", str(neg_ours[1]), str(neg_pres[1]), ratio(neg_ours[1], neg_pres[1]))
    )
    for key, label in (
        ("eval", f"eval set, {len(texts)} msgs"),
        ("typical", f"Banking77 sample, {len(typical)} msgs"),
    ):
        a, b = speed[key]
        rows.append((f"speed, {label} (msgs/s)", f"{a:,.0f}", f"{b:,.0f}", f"{a / b:.1f}x"))

    print(f"PII eval set: {len(cases)} messages, {len(cases) - n_neg} with PII, {n_neg} hard negatives")
    print()
    print("| metric | DeskPilot | Presidio | ours / Presidio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    cred = s_ours_all.get("CREDENTIALS", KindScore("CREDENTIALS", 0, 0, 0))
    print(
        f"DeskPilot only: CREDENTIALS P / R = {cred.precision:.3f} / {cred.recall:.3f} (n={cred.support}); "
        f"all {len(BUILTIN_KINDS)} kinds P / R = {s_ours_all[OVERALL].precision:.3f} / "
        f"{s_ours_all[OVERALL].recall:.3f}"
    )
    d = s_default[OVERALL]
    print(
        f"Presidio with its default phone regions: overall P / R = {d.precision:.3f} / {d.recall:.3f}, "
        f"PHONE R = {s_default['PHONE'].recall:.3f}"
    )
    print(
        f"Versions: Python {platform.python_version()}, phonenumbers {version('phonenumbers')}, "
        f"python-stdnum {version('python-stdnum')}, presidio-analyzer {version('presidio-analyzer')}, "
        f"spacy {version('spacy')}; {os.cpu_count()} CPUs, {platform.machine()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
