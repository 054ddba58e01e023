"""Vector arithmetic every stage shares, without torch: unit length, the one rule for cosines."""

from __future__ import annotations

import numpy as np

# At most this many texts are queries: on the CPU one intra-op thread encodes a query as fast as two,
# and stays fast when the other cores are busy (two threads then wait on each other: 5-10× slower).
SMALL_TEXT_BATCH = 8


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
