"""``deskpilot monitor`` on decisions logged by a real server: quiet on unchanged traffic, exit 1 with the
right signal when an upstream template wraps every message, its report, gauges and history; and the
service's own monitor task exporting the gauges on /metrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from deskpilot.monitoring.incidents import WRAPPER_HEAD, WRAPPER_TAIL
from deskpilot.store.sql import SqlStore
from tests.helpers import BUNDLED_DATA, run_cli
from tests.integration.api_fixtures import (
    ACME_KEY,
    GLOBEX_KEY,
    MODEL,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)

LABELS, PER_LABEL = 8, 50  # the smallest of these intents has 87 messages: 37 left unseen
CHAMPION = f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(
        tmp_path_factory.mktemp("monitor") / "home", versions=1, labels=LABELS, per_label=PER_LABEL
    )


def unseen_messages(trained: TrainedHome) -> list[str]:
    """Bundled messages of the champion's intents that it was not trained on: 35 of each, shuffled, so the
    stream has the intent mix the champion was validated on."""
    trained_on = pd.read_csv(trained.home / "tickets.csv")
    frame = pd.read_csv(BUNDLED_DATA)
    mine = frame[
        frame["category"].isin(set(trained_on["label"])) & ~frame["text"].isin(set(trained_on["text"]))
    ]
    balanced = mine.groupby("category").head(35).sample(frac=1.0, random_state=0)
    return balanced["text"].tolist()


def send(client: httpx.Client, texts: list[str]) -> list[dict[str, object]]:
    answers: list[dict[str, object]] = []
    for start in range(0, len(texts), 16):
        response = client.post(
            "/v1/triage/batch", json={"items": [{"text": t} for t in texts[start : start + 16]]}
        )
        assert response.status_code == 200, response.text
        answers.extend(response.json()["items"])
    return answers


def wait_for_decisions(home: Path, count: int) -> None:
    store = SqlStore(f"sqlite:///{(home / 'deskpilot.db').resolve()}")
    try:
        deadline = time.monotonic() + 60
        while sum(len(page) for page in store.scan_reviewed()) < count:
            assert time.monotonic() < deadline, "the decision log never caught up"
            time.sleep(0.1)
    finally:
        store.close()


@pytest.fixture(scope="module")
def logged(trained: TrainedHome) -> dict[str, str]:
    """Clean traffic from two tenants, then wrapped traffic; returns the boundaries as ISO times."""
    texts = unseen_messages(trained)
    settings = settings_for(
        trained,
        review_sample_rate=0.25,
        max_text_length=1000,
        rate_limit_per_s=10_000.0,
        max_body_bytes=100_000,
    )
    with running(settings) as server:
        start = datetime.now(UTC)
        with server.client(ACME_KEY) as acme, server.client(GLOBEX_KEY) as globex:
            half = len(texts) // 2
            answers = send(acme, texts[:half]) + send(globex, texts[half:])
            assert any(a["review"] for a in answers)
            assert all(a["route"] == "auto" for a in answers if a["review"])
            switch = datetime.now(UTC)
            send(acme, [f"{WRAPPER_HEAD}{text}{WRAPPER_TAIL}" for text in texts])
        wait_for_decisions(trained.home, 2 * len(texts))
        end = datetime.now(UTC)
    return {
        "start": start.isoformat(),
        "switch": switch.isoformat(),
        "end": end.isoformat(),
        "clean": str(len(texts)),
    }


def test_unchanged_traffic_is_quiet(trained: TrainedHome, logged: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(
        "monitor",
        "--model",
        CHAMPION,
        "--since",
        logged["start"],
        "--until",
        logged["switch"],
        "--json",
        home=trained.home,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["fired"] is False
    scopes = {w["tenant"]: w["decisions"] for w in report["windows"]}
    clean = int(logged["clean"])
    assert scopes == {None: clean, "acme": clean // 2, "globex": clean - clean // 2}
    names = {s["name"] for s in report["windows"][0]["signals"]}
    assert {"intent_histogram", "domain_classifier", "label_shift", "accuracy_estimate"} <= names
    assert all(
        s["q_value"] is None or s["q_value"] >= s["p_value"]
        for s in report["windows"][0]["signals"]
        if s["p_value"] is not None
    )


def test_a_template_wrapper_fires_input_drift_with_its_words(
    trained: TrainedHome, logged: dict[str, str], tmp_path: Path
) -> None:
    prom = tmp_path / "monitor.prom"
    result = run_cli(
        "monitor",
        "--model",
        CHAMPION,
        "--since",
        logged["switch"],
        "--until",
        logged["end"],
        "--report",
        tmp_path / "report",
        "--textfile",
        prom,
        "--json",
        home=trained.home,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    overall = report["windows"][0]
    assert overall["tenant"] is None
    assert "domain_classifier" in overall["fired"]
    domain = next(s for s in overall["signals"] if s["name"] == "domain_classifier")
    assert domain["statistic"] > 0.9  # AUC: the wrapper is trivially separable
    window_terms = {term["term"] for term in domain["detail"]["window_terms"]}
    wrapper_words = {"support", "form", "customer", "wrote", "reply", "sent", "mobile", "app", "case"}
    assert window_terms & wrapper_words  # the report names the words that separate the window
    assert (tmp_path / "report" / "monitor.html").stat().st_size > 0
    exposition = prom.read_text()
    assert 'deskpilot_monitor_signal_fired{signal="domain_classifier",tenant="*"} 1.0' in exposition
    history = run_cli(
        "monitor", "--model", CHAMPION, "--since", logged["switch"], "--no-record", home=trained.home
    )
    assert history.returncode == 1
    assert "domain_classifier" in history.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "not an ISO-8601"),
        (("--window", "5 parsecs"), "give a duration"),
        (("--last", "1h", "--since", "2026-12-01T10:00"), "give one"),
        (("--since", "2026-12-01T10:00", "--until", "2026-12-01T09:00"), "end after it starts"),
    ],
)
def test_usage_errors_exit_2(trained: TrainedHome, args: tuple[str, ...], message: str) -> None:
    result = run_cli("monitor", "--model", CHAMPION, *args, home=trained.home)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_champion_or_no_store_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("monitor", home=tmp_path / "empty")
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_service_runs_the_monitor_and_exports_its_gauges(
    trained: TrainedHome, logged: dict[str, str]
) -> None:
    settings = settings_for(trained, monitor_interval_s=0.5, monitor_window_s=86_400.0)
    with running(settings) as server, server.client() as client:
        deadline = time.monotonic() + 90
        while True:
            metrics = client.get("/metrics").text
            last_run = [
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("deskpilot_monitor_last_run_timestamp_seconds ")
            ]
            if last_run and last_run[0] > 0:
                break
            assert time.monotonic() < deadline, "the monitor task never finished a run"
            time.sleep(0.25)
    assert 'deskpilot_monitor_signal_fired{signal="domain_classifier",tenant="*"} 1.0' in metrics
    assert 'deskpilot_monitor_window_decisions{tenant="acme"}' in metrics
