"""The closed loop (ADR 0014): verdicts read from the store (:mod:`.verdicts`), exported as a dataset
(:mod:`.export`), judged by the guard (:mod:`.guard`), added to the champion's snapshot with the champion's
split kept (:mod:`.derive`), retrained, gated and put in shadow (:mod:`.retrain`), and reported
(:mod:`.report`)."""
