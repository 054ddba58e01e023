"""Background work shared by the app and the CLI: the job runner, its journal, watched folders."""
