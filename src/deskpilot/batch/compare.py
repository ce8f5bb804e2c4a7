"""The champion/challenger comparison of a finished batch job, read back from its output a chunk at a time.

Computed from what was written (a file of the local engine, or the Ray engine's folder of Parquet parts),
so the report and the output file can never disagree, and a job larger than memory is read column-wise.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads

from deskpilot.data.io import iter_batches
from deskpilot.evaluation.comparison import ComparisonReport, ComparisonTally

COLUMNS = ("intent", "route", "challenger_intent", "challenger_route")
READ_ROWS = 65_536


def compare_output(output: Path, *, champion: str, challenger: str) -> ComparisonReport:
    """Tally the scored rows under ``output`` (a file, or a folder of Parquet parts)."""
    tally = ComparisonTally()
    if output.is_dir():
        files = sorted(str(p) for p in output.glob("*.parquet"))
        if files:
            dataset = pads.dataset(files, format="parquet")
            columns = [*COLUMNS, *(["label"] if "label" in dataset.schema.names else [])]
            for batch in dataset.to_batches(columns=columns, batch_size=READ_ROWS):
                tally.add(batch.to_pandas())
    else:
        for chunk in iter_batches(output, READ_ROWS):
            tally.add(chunk)
    return tally.report(champion, challenger)
