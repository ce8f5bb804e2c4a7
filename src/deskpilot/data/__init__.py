"""Data layer: readers, the data contract, PII redaction, snapshots and splits."""
