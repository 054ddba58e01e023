"""`python -m embedder index | search | info`: the product without the web pages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from embedder.config import Settings, checked_cosine
from embedder.errors import EmbedderError
from embedder.indexer import Progress

log = logging.getLogger("embedder")


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (0 ≤ I < N) → (I, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 ≤ I < N")
    return index, count


def parse_ks(text: str) -> tuple[int, ...]:
    """`1,5,10` → (1, 5, 10)."""
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be numbers like 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("--k needs cut-offs of at least 1")
    return ks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m embedder", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="index image files and folders")
    index.add_argument("paths", nargs="+", type=Path)
    index.add_argument("--prune", action="store_true", help="forget images under PATHS whose files are gone")
    index.add_argument("--shard", type=parse_shard, help="I/N: index only this worker's share (by content hash)")
    index.add_argument("--json", action="store_true", help="print the report as JSON")

    search = commands.add_parser(
        "search",
        help="find images by text, images and stored points",
        description="Terms add up: `beach 2:sunset -people` means beach, twice as much sunset, no people. "
        "Put `--` before terms that start with '-'.",
    )
    search.add_argument("terms", nargs="*", help="TEXT, -TEXT (subtract) or WEIGHT:TEXT")
    search.add_argument("--image", action="append", default=[], type=Path, metavar="PATH", help="an image as a term")
    search.add_argument("--like", action="append", default=[], metavar="ID", help="a stored image's id as a term")
    search.add_argument("-k", "--limit", type=int, default=10)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--min-score", type=float, default=None)
    search.add_argument("--template", default=None, help='e.g. "a photo of {}"')
    search.add_argument("--folder", help="only images in this folder or below")
    search.add_argument("--type", dest="types", default="", help="file types, e.g. jpeg,png")
    search.add_argument("--after", type=date.fromisoformat, help="taken on or after YYYY-MM-DD")
    search.add_argument("--before", type=date.fromisoformat, help="taken on or before YYYY-MM-DD")
    search.add_argument("--min-width", type=int)
    search.add_argument("--min-height", type=int)
    search.add_argument("--collapse", action="store_true", help="show one of each set of near-duplicates")
    search.add_argument("--threshold", type=float, default=None, help="near-duplicate cosine, default DUPLICATE_THRESHOLD")
    search.add_argument("--json", action="store_true")

    dupes = commands.add_parser("duplicates", help="list groups of near-duplicate images")
    dupes.add_argument("--threshold", type=float, default=None, help="cosine similarity, default DUPLICATE_THRESHOLD")
    dupes.add_argument("--json", action="store_true")

    evaluate = commands.add_parser(
        "eval",
        help="measure retrieval quality (P@K, R@K, mAP, MRR) on a labelled dataset",
        description="DATASET is a folder of class folders (the query is the class name) or a CSV with "
        "path,caption columns. It is indexed into a throw-away store unless --live is given.",
    )
    evaluate.add_argument("dataset", type=Path)
    evaluate.add_argument("--k", type=parse_ks, default=(1, 5, 10), help="cut-offs, e.g. 1,5,10")
    evaluate.add_argument(
        "--model", dest="models", action="append", default=[], metavar="MODEL",
        help="a model to compare, each in its own scratch store (repeat for a leaderboard; default EMBEDDER_MODEL)",
    )
    evaluate.add_argument(
        "--template", dest="templates", action="append", default=[], metavar="TEMPLATE",
        help='prompt template for text queries, e.g. "a photo of {}" (repeat to compare; "{}" is the bare label)',
    )
    evaluate.add_argument("--ensemble", action="store_true", help="also the mean of the templates' query vectors")
    evaluate.add_argument(
        "--compare-templates", action="store_true", help="text→image without and with the template side by side"
    )
    evaluate.add_argument("--live", action="store_true", help="index into and search the configured collection")
    evaluate.add_argument("--per-query", action="store_true", help="also list every text query, worst first")
    evaluate.add_argument("--json", action="store_true")

    commands.add_parser("migrate", help="convert an old qdrant-client local-mode folder (QDRANT_PATH) to Qdrant Edge")

    info = commands.add_parser("info", help="storage, collection, model and image count")
    info.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "migrate":  # before any store is opened: the old folder is refused until converted
        from embedder.store_edge import migrate_main

        return migrate_main()
    try:
        settings = Settings.from_env()
        with ExitStack() as stack:
            if args.command == "eval":
                settings = _eval_settings(settings, args, stack)
            from embedder.engine import Engine  # after settings: a bad setting fails before torch loads

            engine = Engine.open(settings, shard=getattr(args, "shard", None))
            stack.callback(engine.close)
            return COMMANDS[args.command](engine, args)
    except EmbedderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to finish (nothing is indexed twice)", file=sys.stderr)
        return 130


def run_index(engine: Any, args: argparse.Namespace) -> int:
    report = engine.indexer.index(args.paths, prune=args.prune, on_progress=None if args.json else _show_progress)
    if args.json:
        _print_json(report.as_dict())
        return 0
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for failure in report.failed:
        print(f"failed: {failure.path}: {failure.reason}")
    for path in report.removed:
        print(f"removed: {path}")
    print(report.summary())
    return 0


def _show_progress(p: Progress) -> None:
    if not sys.stderr.isatty():
        return
    eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
    print(f"\r{p.done}/{p.total} files, {p.images_per_s:.1f} images/s{eta}   ", end="", file=sys.stderr)


def run_search(engine: Any, args: argparse.Namespace) -> int:
    from embedder.images import decode
    from embedder.search import Query, Term, make_filter, parse_term

    terms = [parse_term(t) for t in args.terms]
    terms += [Term(image=decode(path, engine.settings.max_image_pixels).image, label=path.name) for path in args.image]
    terms += [Term(point_id=pid) for pid in args.like]
    if not terms:
        raise EmbedderError("search needs at least one term: a text, --image PATH or --like ID")
    query = Query(
        tuple(terms),
        template=args.template,
        where=make_filter(args.folder, args.types.split(","), args.after, args.before, args.min_width, args.min_height),
        min_score=args.min_score,
        collapse=_threshold(engine, args) if args.collapse else None,
    )
    results = engine.searcher.search(query, args.limit, args.offset)
    if args.json:
        _print_json([{"score": r.score, "path": r.path, "name": r.name, "id": r.id} for r in results])
        return 0
    if not results:
        print("no matches" if engine.store.count() else "nothing indexed yet: run `python -m embedder index FOLDER`")
    for r in results:
        print(f"{r.score:.3f}  {r.path}")
    return 0


def _threshold(engine: Any, args: argparse.Namespace) -> float:
    if args.threshold is None:
        return engine.settings.duplicate_threshold
    return checked_cosine("--threshold", args.threshold)


def run_duplicates(engine: Any, args: argparse.Namespace) -> int:
    from embedder.duplicates import near_duplicate_groups

    groups = near_duplicate_groups(engine.store, _threshold(engine, args))
    if args.json:
        _print_json([{"score": g.score, "paths": [p["paths"] for p in g.payloads]} for g in groups])
        return 0
    for g in groups:
        print(f"{len(g.ids)} images, cosine ≥ {g.score:.3f}:")
        for payload in g.payloads:
            print(f"  {payload['paths'][0]}")
    print(f"{len(groups)} groups of near-duplicates")
    return 0


def _eval_settings(settings: Settings, args: argparse.Namespace, stack: ExitStack) -> Settings:
    """The first model to evaluate, in a throw-away store unless --live; the text model stays only
    with the model it was set for."""
    args.models = list(dict.fromkeys(args.models))
    if args.live and args.models:
        raise EmbedderError("eval --live measures the configured collection's model: leave out --model")
    if args.ensemble and len(args.templates) < 2:
        raise EmbedderError('--ensemble needs two or more --template, e.g. --template "{}" --template "a photo of {}"')
    if args.models and args.models[0] != settings.model:
        settings = replace(settings, model=args.models[0], text_model=None)
    if args.live:
        return settings
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedder-eval-")))
    return replace(settings, qdrant_url=None, qdrant_path=scratch, collection="eval")


def run_eval(engine: Any, args: argparse.Namespace) -> int:
    from embedder.engine import Engine
    from embedder.evaluate import evaluate_model, format_per_query, format_table, load_dataset
    from embedder.search import DEFAULT_TEMPLATE

    try:
        dataset = load_dataset(args.dataset)
    except (OSError, ValueError) as exc:
        raise EmbedderError(str(exc)) from None
    templates = args.templates or [None]
    if args.compare_templates:
        templates = [None, templates[0] or DEFAULT_TEMPLATE]
    evaluations, report = evaluate_model(engine, dataset, args.k, templates, args.ensemble)
    failures = list(report.failed)
    for model in args.models[1:]:  # each further model in its own scratch store, one loaded at a time
        with tempfile.TemporaryDirectory(prefix="embedder-eval-") as scratch:
            settings = replace(engine.settings, model=model, text_model=None, qdrant_path=Path(scratch))
            other = Engine.open(settings)
            try:
                more, report = evaluate_model(other, dataset, args.k, templates, args.ensemble)
            finally:
                other.close()
        evaluations += more
        failures += [f for f in report.failed if f.path not in {g.path for g in failures}]
    for failure in failures:
        print(f"skipped: {failure.path}: {failure.reason}", file=sys.stderr)
    if args.json:
        _print_json({"dataset": str(dataset.root), "images": len(dataset.labels), "evaluations": [
            e.as_dict(per_query=args.per_query) for e in evaluations
        ]})
        return 0
    models = ", ".join(dict.fromkeys(e.model for e in evaluations))
    print(f"{len(dataset.labels)} images, {len(dataset.queries)} text queries, model {models}")
    print(format_table(evaluations))
    if args.per_query:
        for evaluation in (e for e in evaluations if e.mode == "text→image"):
            print(f"\ntext queries, {evaluation.model}, template {evaluation.template or '—'}, worst first:")
            print(format_per_query(evaluation, args.k[min(1, len(args.k) - 1)]))
    return 0


def run_info(engine: Any, args: argparse.Namespace) -> int:
    info = engine.info()
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>10}: {value}")
    return 0


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


COMMANDS = {
    "index": run_index,
    "search": run_search,
    "duplicates": run_duplicates,
    "eval": run_eval,
    "info": run_info,
}


def app_main(argv: Sequence[str] | None = None) -> int:
    """`embedder-app` / `embedder app`: the Streamlit app from anywhere, on 127.0.0.1, usage stats off."""
    import os
    import subprocess

    script = Path(__file__).resolve().parent.parent / "embedder_ui" / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", *(argv or []),
    ]
    try:
        return subprocess.call(command, env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    except KeyboardInterrupt:
        return 130
