"""Schema fuzzing of the live service: whatever a client sends that the OpenAPI document allows, or nearly
allows, the answer is never a server error.

Schemathesis (its CLI, in a subprocess) reads ``/openapi.json`` from the real server and sends generated
requests, valid and invalid, to every operation with a valid API key: schema examples, boundary and
content-type probes (the coverage phase), then random fuzzing. Generation is deterministic, so a run is
repeatable, and the example count is bounded to keep the run well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deskpilot.workflows.knowledge import KbImportRequest, import_knowledge
from tests.helpers import bundled_subset
from tests.integration.api_fixtures import ACME_KEY, running, settings_for, trained_home
from tests.integration.copilot.kb_fixtures import link_encoder
from tests.live_server import LiveServer

MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, encoder_cache: Path) -> Iterator[LiveServer]:
    trained = trained_home(tmp_path_factory.mktemp("fuzz") / "home", versions=1)
    # a knowledge index, so that the copilot's routes are fuzzed past their 503 "no index yet"
    link_encoder(trained.home, encoder_cache)
    tickets = trained.home / "kb-tickets.csv"
    bundled_subset(labels=3, per_label=5).to_csv(tickets, index=False)
    settings = settings_for(trained, rate_limit_per_s=0, reload_interval_s=0, kb_reload_interval_s=0)
    import_knowledge(settings, KbImportRequest(tickets, "acme", "tickets"))
    # no rate limit: the fuzzer would otherwise spend its examples on 429s
    with running(settings) as live:
        yield live


def schemathesis_run(server: LiveServer, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {ACME_KEY}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--request-timeout",
        "10",
        "--workers",
        "2",
        "--no-color",
        *options,
    ]
    # its own working directory: Schemathesis reads a config file from there, and none must interfere
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=240, check=False)


def test_no_generated_request_gets_a_server_error(server: LiveServer, tmp_path: Path) -> None:
    with server.client(ACME_KEY) as client:
        operations = sum(len(methods) for methods in client.get("/openapi.json").json()["paths"].values())
    # Generated feedback names intents no model knows, so most get 422 unknown_intent by design; Schemathesis
    # warns about that ("missing valid data"), and a warning replaces its "No issues found" line.
    result = schemathesis_run(server, tmp_path, "--checks", "not_a_server_error", "--warnings", "off")
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert f"{operations} selected / {operations} total" in report
    assert f"Tested: {operations}" in report
    assert "No issues found" in report
    assert ACME_KEY not in report  # Schemathesis filters the Authorization header from its output


def test_an_undeclared_method_is_405_with_the_allowed_ones(server: LiveServer) -> None:
    """Found by Schemathesis' ``unsupported_method`` check: RFC 9110 requires ``Allow`` on a 405."""
    with server.client(ACME_KEY) as client:
        on_post = client.get("/v1/triage")
        on_get = client.request("TRACE", "/v1/models")
    assert (on_post.status_code, on_post.headers["allow"]) == (405, "POST")
    assert on_get.status_code == 405
    assert on_get.headers["allow"] == "GET"
    assert on_get.json()["error"]["code"] == "method_not_allowed"
