"""The Prometheus rules in ``deploy/prometheus``: valid for promtool, every alert tested there, labelled and
linked to its runbook section, written against metrics that exist, and raised by a real Prometheus scraping
a real ``deskpilot serve``."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from deskpilot.cli.main import COMMANDS, load_command
from deskpilot.monitoring.metrics import MonitorMetrics
from deskpilot.monitoring.types import SignalName
from tests.integration.alert_rules import (
    PROMETHEUS_DIR,
    RULE_TESTS_DIR,
    RULES_DIR,
    RUNBOOK,
    cited_commands,
    github_anchor,
    load_rules,
    parse_promql,
    prometheus_binary,
    runbook_anchors,
    runbook_sections,
)
from tests.integration.api_fixtures import (
    ACME_KEY,
    TINY_KEY,
    TrainedHome,
    running,
    settings_for,
    trained_home,
)
from tests.integration.test_cli_serve import serve_process
from tests.live_server import free_port

T = TypeVar("T")


def _monitor_metrics() -> dict[str, set[str]]:
    """The gauges and counter the monitor exports, with their labels, read off the real MonitorMetrics: the
    contract the monitor rules are written against."""
    metrics = MonitorMetrics()
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if value._type == "counter" else ""
            found[value._name + suffix] = set(value._labelnames)
    return found


MONITOR_METRICS = _monitor_metrics()
MONITOR_SIGNALS = {str(name) for name in SignalName}
#: Accuracy signals are alerted on through the estimates of deskpilot_monitor_estimated_accuracy{method}.
ACCURACY_METHODS = {"feedback", "confidence", "audit_sample", "label_shift_corrected"}
#: Series Prometheus makes itself, and the labels it adds to every scraped one.
PROMETHEUS_SERIES = {"up": set[str]()}
TARGET_LABELS = {"job", "instance"}
RUNBOOK_PARTS = ("**Meaning.**", "**Confirm.**", "**Mitigate.**", "**Prevent.**")
OPS_KEY = "ops-key-0123456789abcdef"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def test_promtool_accepts_the_rules_and_the_example_configuration() -> None:
    promtool = prometheus_binary("promtool")
    rules = run(promtool, "check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"{len(list(RULES_DIR.glob('*.yml')))} rule files found" in config.stdout


def test_the_promtool_unit_tests_pass() -> None:
    promtool = prometheus_binary("promtool")
    files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    done = run(promtool, "test", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_every_alert_fires_in_a_promtool_test_and_burn_rates_also_stay_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule.name for rule in load_rules() if rule.alert}
    assert alerts - firing == set(), "alerts no promtool test sees firing"
    burn_rates = {name for name in alerts if "BudgetBurn" in name}
    assert len(burn_rates) == 4
    assert burn_rates - quiet == set(), "burn-rate alerts no promtool test sees staying quiet"


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook_section() -> None:
    alerts = [rule for rule in load_rules() if rule.alert]
    names = [rule.name for rule in alerts]
    assert len(names) == len(set(names)), "alert names must be unique"
    anchors = runbook_anchors(RUNBOOK.read_text(encoding="utf-8"))
    for rule in alerts:
        assert rule.name.startswith("DeskPilot"), rule.name
        assert rule.labels.get("severity") in {"page", "ticket"}, rule.name
        assert set(rule.annotations) == {"summary", "description", "runbook_url"}, rule.name
        url = rule.annotations["runbook_url"]
        assert url == f"docs/runbook.md#{rule.name.lower()}", rule.name
        assert url.partition("#")[2] in anchors, f"{rule.name}: no heading in docs/runbook.md for {url}"


def test_the_runbook_has_one_complete_section_per_alert_and_none_for_alerts_that_do_not_exist() -> None:
    sections = runbook_sections(RUNBOOK.read_text(encoding="utf-8"))
    alert_sections = {heading for heading in sections if heading.startswith("DeskPilot")}
    assert alert_sections == {rule.name for rule in load_rules() if rule.alert}
    for heading in alert_sections:
        assert github_anchor(heading) == heading.lower()
        missing = [part for part in RUNBOOK_PARTS if part not in sections[heading]]
        assert not missing, f"the runbook section {heading} lacks {missing}"


def resolve_command(words: list[str]) -> tuple[Any, list[str]]:
    """The click command ``deskpilot WORDS`` runs and the words left for it (a group that runs on its own,
    like ``demo``, may be cited without a subcommand)."""
    assert words[0] in COMMANDS, f"no command {words[0]!r}"
    command: Any = load_command(words[0])
    rest = words[1:]
    while hasattr(command, "commands"):
        if not (rest and rest[0] in command.commands):
            assert getattr(command, "invoke_without_command", False), f"{words}: no such subcommand"
            break
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


def test_the_runbook_cites_only_commands_and_options_that_exist() -> None:
    cited = cited_commands(RUNBOOK.read_text(encoding="utf-8"))
    assert len(cited) > 20
    for words in cited:
        command, rest = resolve_command(words)
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        unknown = [word for word in rest if word.startswith("--") and word.split("=")[0] not in options]
        assert not unknown, f"`deskpilot {' '.join(words)}`: no option {unknown}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    return trained_home(tmp_path_factory.mktemp("alerts") / "home", versions=1)


def exported_series(text: str) -> tuple[set[str], dict[str, dict[str, set[str]]]]:
    """Every sample name the exposition can show (from each family's type), and the label names and
    values of the samples it does show."""
    names: set[str] = set()
    labels: dict[str, dict[str, set[str]]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        for sample in family.samples:
            seen = labels.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                seen.setdefault(label, set()).add(value)
    return names, labels


def test_every_metric_and_label_the_rules_use_is_exported(trained: TrainedHome) -> None:
    # an LLM endpoint is configured (never called here), so the gateway's series exist for its providers
    llm = {"llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "any"}
    with running(settings_for(trained, **llm)) as server:
        with server.client(ACME_KEY) as client:
            assert client.post("/v1/triage", json={"text": "my card has not arrived"}).status_code == 200
        with server.client("not-a-key-0123456789") as client:
            assert client.post("/v1/triage", json={"text": "hello"}).status_code == 401
        with server.client(TINY_KEY) as client:  # a burst of 2: the third is refused
            codes = [client.post("/v1/triage", json={"text": "hello"}).status_code for _ in range(4)]
            assert 429 in codes
        with server.client() as client:
            exposition = client.get("/metrics").text
    service_names, service_labels = exported_series(exposition)
    sampled = {name: set(service_labels[name]) for name in service_labels}
    known = {**{name: sampled.get(name) for name in service_names}, **MONITOR_METRICS}
    known |= PROMETHEUS_SERIES
    rules = load_rules()
    recorded = {rule.name for rule in rules if not rule.alert}
    for rule in rules:
        parsed = parse_promql(rule.expr)
        assert parsed.selectors, rule.name
        labels_here: set[str] | None = set(TARGET_LABELS)
        for selector in parsed.selectors:
            if selector.metric in recorded:
                continue
            assert selector.metric in known, f"{rule.name}: {selector.metric} is not exported"
            have = known[selector.metric]
            if have is None:  # deskpilot_rollbacks_total: its rule label comes with the first rollback
                labels_here = None
                continue
            labels_here = None if labels_here is None else labels_here | have
            unknown = selector.labels - have - TARGET_LABELS - {"__name__"}
            assert not unknown, f"{rule.name}: {selector.metric} has no label {unknown}"
            for label, value in selector.equals.items():
                seen = service_labels.get(selector.metric, {}).get(label)
                assert seen is None or value in seen, (
                    f"{rule.name}: {selector.metric} has no {label}={value!r}"
                )
        unknown = parsed.grouping - (parsed.grouping if labels_here is None else labels_here)
        assert not unknown, f"{rule.name}: groups by labels no series in it has: {unknown}"
        for text in rule.annotations.values():
            for name in re.findall(r"\bdeskpilot_\w+", text):
                assert name in known, f"{rule.name}: its annotations query {name}, which is not exported"
    used = {s.metric for rule in rules for s in parse_promql(rule.expr).selectors}
    unsampled = {name for name in used if name in known and known[name] is None}
    assert unsampled <= {"deskpilot_rollbacks_total"}, f"drive the app so that it exports {unsampled}"
    assert used & set(MONITOR_METRICS), "the monitor's gauges are checked"
    assert used & service_names, "the service's metrics are checked"


def test_the_monitor_rules_cover_every_signal_and_every_accuracy_method() -> None:
    signals: set[str] = set()
    methods: set[str] = set()
    for rule in load_rules():
        if "deskpilot_monitor_" not in rule.expr:
            continue
        for value in re.findall(r'signal=~?"([^"]+)"', rule.expr):
            signals.update(value.split("|"))
        for value in re.findall(r'method=~?"([^"]+)"', rule.expr):
            methods.update(value.split("|"))
    assert signals <= MONITOR_SIGNALS, f"unknown signals: {signals - MONITOR_SIGNALS}"
    assert signals == {s for s in MONITOR_SIGNALS if not s.startswith("accuracy_")}
    assert methods == ACCURACY_METHODS


def poll(what: Callable[[], T | None], deadline_s: float, failure: Callable[[], str]) -> T:
    """``what()`` once it is not None; fails with ``failure()`` after ``deadline_s``."""
    give_up = time.monotonic() + deadline_s
    while True:
        found = what()
        if found is not None:
            return found
        if time.monotonic() > give_up:
            pytest.fail(failure())
        time.sleep(0.5)


@contextmanager
def prometheus_process(config: Path, data: Path, logs: Path) -> Iterator[str]:
    """A Prometheus server on a free port with ``config``; yields its base URL once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with logs.open("wb") as sink:
        process = subprocess.Popen(
            [
                prometheus_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool | None:
                assert process.poll() is None, f"prometheus exited:\n{logs.read_text()[-3000:]}"
                try:
                    return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200 or None
                except httpx.TransportError:
                    return None

            poll(ready, 60, lambda: f"prometheus never became ready:\n{logs.read_text()[-3000:]}")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_prometheus_raises_the_auth_failure_alert_from_a_running_server(
    trained: TrainedHome, tmp_path: Path
) -> None:
    prometheus_binary("prometheus")
    env = {"DESKPILOT_OPS_KEY": OPS_KEY}
    with serve_process(trained.home, tmp_path / "serve.log", env_extra=env) as (_, service):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_DIR / "*.yml")],
            "scrape_configs": [
                {
                    "job_name": "deskpilot",
                    "authorization": {"type": "Bearer", "credentials": OPS_KEY},
                    "static_configs": [{"targets": [service.removeprefix("http://")]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        logs = tmp_path / "prometheus.log"
        with prometheus_process(tmp_path / "prometheus.yml", tmp_path / "data", logs) as api:

            def query(promql: str) -> list[dict[str, Any]]:
                answer = httpx.get(f"{api}/api/v1/query", params={"query": promql}, timeout=10)
                return list(answer.json()["data"]["result"])

            def alert(name: str) -> dict[str, Any] | None:
                alerts = httpx.get(f"{api}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
                return next((a for a in alerts if a["labels"]["alertname"] == name), None)

            poll(
                lambda: query('up{job="deskpilot"} == 1') or None,
                60,
                lambda: f"Prometheus never scraped the service: {query('up')}\n{logs.read_text()[-3000:]}",
            )
            assert alert("DeskPilotAuthFailures") is None, "no wrong keys were sent yet"
            with httpx.Client(base_url=service, timeout=30) as client:
                wrong = {"Authorization": "Bearer not-a-key-0123456789"}
                codes = {
                    client.post("/v1/triage", json={"text": "x"}, headers=wrong).status_code
                    for _ in range(400)
                }
            assert codes == {401}
            raised = poll(
                lambda: alert("DeskPilotAuthFailures"),
                120,
                lambda: (
                    "DeskPilotAuthFailures never became pending: "
                    f"{query('sum(rate(deskpilot_auth_failures_total[5m]))')}\n{logs.read_text()[-3000:]}"
                ),
            )
            others = httpx.get(f"{api}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert raised["state"] in {"pending", "firing"}
    assert raised["labels"]["severity"] == "ticket"
    assert raised["annotations"]["runbook_url"] == "docs/runbook.md#deskpilotauthfailures"
    assert "DeskPilotTargetDown" not in {a["labels"]["alertname"] for a in others}
