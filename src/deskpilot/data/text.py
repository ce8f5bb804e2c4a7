"""Text normalization shared by de-duplication, grouping and leakage checks."""

from __future__ import annotations

import pandas as pd

_NOT_WORD = r"[^\w\s]"


def normalize_texts(texts: pd.Series) -> pd.Series:
    """Fold case, Unicode forms, punctuation and spacing, so near-identical messages compare equal."""
    return (
        texts.astype(str)
        .str.normalize("NFKC")
        .str.casefold()
        .str.replace(_NOT_WORD, " ", regex=True)
        .str.split()
        .str.join(" ")
    )
