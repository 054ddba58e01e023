"""Measuring (and improving) retrieval quality on labelled pictures."""
