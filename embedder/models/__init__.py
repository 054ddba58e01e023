"""Pictures and text to vectors: the model backends (CLIP, SigLIP, open_clip), the visual model, the text fast path."""
