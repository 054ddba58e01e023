"""Sources to points: identity, copies and renames, prune, tags, the report."""
