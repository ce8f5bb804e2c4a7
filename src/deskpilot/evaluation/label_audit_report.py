"""The label audit as files: all of it in JSON, the most doubtful rows in HTML and Markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from deskpilot.evaluation.label_audit import LabelAudit
from deskpilot.evaluation.rendering import FILTERS, atomic_write, template_environment

JSON_FILE = "label_audit.json"
HTML_FILE = "label_audit.html"
MARKDOWN_FILE = "label_audit.md"
#: Rows and pairs the readable reports list; the JSON holds every one.
SHOWN = 200


def _environment() -> jinja2.Environment:
    return template_environment("deskpilot.evaluation", FILTERS)


def write_label_audit(audit: LabelAudit, directory: Path, *, source: str) -> dict[str, Path]:
    """Write the three files into ``directory`` (created if missing); returns their paths by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    context = {
        "a": audit,
        "source": source,
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "shown": SHOWN,
    }
    env = _environment()
    paths = {
        "json": directory / JSON_FILE,
        "html": directory / HTML_FILE,
        "markdown": directory / MARKDOWN_FILE,
    }
    atomic_write(paths["json"], json.dumps({"source": source, **audit.to_dict()}, indent=2) + "\n")
    atomic_write(paths["html"], env.get_template("label_audit.html.j2").render(**context))
    atomic_write(paths["markdown"], env.get_template("label_audit.md.j2").render(**context))
    return paths
