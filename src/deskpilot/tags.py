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
# write-once claims of rollout steps, beside a version (with MLflow: parameters of its run), one per step
ROLLOUT_CLAIM = "deskpilot.rollout_claim"

# A version retrained from feedback (ADR 0014): its parent snapshot and the verdicts it took in.
FEEDBACK_PARENT = "deskpilot.feedback.parent_digest"
FEEDBACK_SINCE = "deskpilot.feedback.since"
FEEDBACK_UNTIL = "deskpilot.feedback.until"
FEEDBACK_ADDED = "deskpilot.feedback.added_rows"
FEEDBACK_FLIPPED = "deskpilot.feedback.flipped_rows"
FEEDBACK_REJECTED = "deskpilot.feedback.rejected"
# on the registered model: the time of the last verdict a retrain from feedback consumed (ISO, UTC), and
# that retrain's inputs (the snapshot it trained on, the family, the seed), so a run with nothing new stops
FEEDBACK_CONSUMED = "deskpilot.feedback.consumed_until"
FEEDBACK_LAST_INPUTS = "deskpilot.feedback.last_inputs"

GATE_PASS = "pass"
GATE_FAIL = "fail"
