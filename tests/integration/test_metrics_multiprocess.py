"""Metrics across server processes: each worker writes its own samples, any worker's /metrics sums them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deskpilot.service.metrics import MULTIPROC_ENV, ServiceMetrics

WORKER = """
import sys
from deskpilot.service.metrics import ServiceMetrics
m = ServiceMetrics()
assert m.multiprocess_dir is not None
m.predictions.labels("card_arrival", "auto").inc(int(sys.argv[1]))
m.store_queue_depth.set(int(sys.argv[1]))
m.set_model("champion", "triage", "1", "tfidf")
m.set_model("champion", "triage", sys.argv[2], "embed")
if sys.argv[3] == "exit":
    m.process_exited()
"""

RENDER = """
import sys
from deskpilot.service.metrics import ServiceMetrics
sys.stdout.write(ServiceMetrics().render().decode())
"""


def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_any_process_reports_the_sums_over_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    run_python(WORKER, "3", "2", "stay", env=env)
    run_python(WORKER, "4", "2", "exit", env=env)
    seen = samples(run_python(RENDER, env=env))
    assert seen['deskpilot_predictions_total{intent="card_arrival",route="auto"}'] == 7.0
    # the live gauge counts only the worker that did not exit
    assert seen["deskpilot_store_queue_depth"] == 3.0
    # the replaced model reads 0, the one serving now reads 1 (removing a series is impossible across files)
    info = {k: v for k, v in seen.items() if k.startswith("deskpilot_model_info")}
    assert info == {
        'deskpilot_model_info{family="tfidf",name="triage",role="champion",version="1"}': 0.0,
        'deskpilot_model_info{family="embed",name="triage",role="champion",version="2"}': 1.0,
    }


def test_a_folder_named_after_import_is_ignored_consistently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus_client chose in-memory values when it was imported here; writing files now would split
    the samples between memory and disk, so this process keeps reporting its own."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics = ServiceMetrics()
    metrics.predictions.labels("card_arrival", "auto").inc(2)
    assert metrics.multiprocess_dir is None
    assert (
        samples(metrics.render().decode())['deskpilot_predictions_total{intent="card_arrival",route="auto"}']
        == 2.0
    )
    assert not list(tmp_path.iterdir())
