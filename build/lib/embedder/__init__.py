"""Private, local text-to-image search: CLIP vectors in Qdrant."""

__version__ = "0.2.0"
