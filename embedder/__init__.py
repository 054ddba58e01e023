"""Private, local text-to-image search: CLIP vectors in Qdrant."""
