"""Registry tag keys that DeskPilot writes on model versions (and one on the registered model).

One module, so that the writer (training, gating, rollout) and every reader (the service, the CLI, the
console) name a tag the same way. Values are strings, as MLflow stores them.
"""

from __future__ import annotations

FAMILY = "deskpilot.family"
DATASET_DIGEST = "deskpilot.dataset_digest"
SOURCE_FILE = "deskpilot.source_file"
SEED = "deskpilot.seed"
VERSION = "deskpilot.version"  # the DeskPilot release that trained it
GIT_COMMIT = "deskpilot.git_commit"
THRESHOLD = "deskpilot.threshold"
TARGET_PRECISION = "deskpilot.target_precision"
AUTO_COVERAGE = "deskpilot.auto_coverage"
CLASSES = "deskpilot.classes"

GATE = "deskpilot.gate"  # pass | fail
GATE_POLICY = "deskpilot.gate_policy"
GATE_CHAMPION = "deskpilot.gate_champion"
GATE_REASON = "deskpilot.gate_reason"
GATE_AT = "deskpilot.gate_at"

ROLLOUT_STATE = "deskpilot.rollout"  # on the registered model: the rollout state as JSON

GATE_PASS = "pass"
GATE_FAIL = "fail"
