"""The serving half of ``deskpilot demo``: a demo API key, the service on 127.0.0.1, a checked curl line."""

from __future__ import annotations

import json
import shlex
import threading
import time
import urllib.request

import typer

from deskpilot.config import Settings

CHECK_TEXT = "My card still hasn't arrived, what should I do?"


def curl_example(url: str, key: str, route: str = "/v1/triage") -> str:
    body = json.dumps({"text": CHECK_TEXT, "id": "T-1001"} if route == "/v1/triage" else {"text": CHECK_TEXT})
    return (
        f"curl -s {url}{route} -H {shlex.quote('Authorization: Bearer ' + key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def _post(url: str, key: str, body: dict[str, object]) -> str:
    request = urllib.request.Request(  # the standard library: a serving install has no HTTP client
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


def serve_demo(settings: Settings, *, host: str, port: int, key: str) -> None:
    """Serve until interrupted; once ready, prove the curl line works by sending the same request."""
    import uvicorn

    from deskpilot.api.app import create_app
    from deskpilot.service.observability import configure_json_logging

    url = f"http://{host}:{port}"
    log_path = settings.home / "serve.log"
    configure_json_logging(stream_path=log_path)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    )

    def announce() -> None:
        deadline = time.monotonic() + 120
        while not server.started and time.monotonic() < deadline and not server.should_exit:
            time.sleep(0.1)
        if not server.started:
            return
        try:
            answer = _post(f"{url}/v1/triage", key, {"text": CHECK_TEXT, "id": "T-1001"})
            suggestion = json.loads(_post(f"{url}/v1/suggest", key, {"text": CHECK_TEXT}))
            with urllib.request.urlopen(f"{url}/console/sign-in", timeout=30) as page:
                page.read()
        except OSError as exc:  # urllib's URLError and HTTPError (4xx/5xx) are OSErrors
            typer.echo(f"the service started but did not answer: {exc}", err=True)
            server.should_exit = True
            return
        typer.echo(f"  service ready at {url} (OpenAPI: {url}/docs; logs: {log_path})")
        typer.echo(f"  it answered: {answer}")
        draft = suggestion.get("draft") or {}
        typer.echo(f"  and suggested: {draft.get('text') or suggestion.get('reason')}")
        typer.echo(f"  console: {url}/console  (sign in with the demo key, operator role: {key})")
        typer.echo("  try it (the demo key is in .deskpilot/demo-key):")
        typer.echo(f"    {curl_example(url, key)}")
        typer.echo(f"    {curl_example(url, key, '/v1/suggest')}")
        typer.echo("  serving until Ctrl-C")

    threading.Thread(target=announce, name="demo-announce", daemon=True).start()
    server.run()
