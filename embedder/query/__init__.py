"""A Query to one store request to ResultPages, for the CLI and the pages alike."""
