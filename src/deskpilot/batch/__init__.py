"""Batch scoring of files: streamed, atomic, local (Ray on the roadmap)."""
