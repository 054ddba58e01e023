"""`embedder` (or `python -m embedder`): index, search, watch and look after your photo index from a terminal.

Settings come from the environment and a settings file (EMBEDDER_ENV_FILE, ./qdrant.env, or qdrant.env in
your config folder); `embedder info` shows which one is used and every path in use.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from embedder import __version__
from embedder.config import Settings, checked_cosine, collection_name
from embedder.errors import EmbedderError, ImageError, StoreInUseError
from embedder.paths import missing, path_to_text, text_to_path, typed_path
from embedder.terminal import printable

if TYPE_CHECKING:
    from embedder.indexing.indexer import Progress
    from embedder.jobs.runner import Job

log = logging.getLogger("embedder")

T = TypeVar("T")
# The most results one search may skip or return. Qdrant sizes buffers by limit + offset (servers
# have panicked on huge limits, and the sum can overflow); a million is more than a person pages.
MAX_RESULTS = 1_000_000
MAX_SIDE_PX = 2**31 - 1  # PNG and TIFF store sizes in 31-32 bits: no image file is wider
SPLIT_NAMES = ("train", "validation", "test")  # embedder.evaluation.splits.SPLITS, without importing it for --help


def not_utf8(text: str) -> bool:
    """Whether an argument held bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def utf8_only(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type that refuses text that is not UTF-8, showing its bytes as `\\xNN`, before
    `parse` sees it. Every option but the paths takes text; paths take `typed_path`, which opens
    any name the system has."""

    @functools.wraps(parse)
    def parse_text(text: str) -> T:
        if not_utf8(text):
            raise argparse.ArgumentTypeError(f"{printable(text)} is not UTF-8 text (\\xNN: a byte that is not); type it in UTF-8")
        return parse(text)

    return parse_text


@utf8_only
def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (0 ≤ I < N) → (I, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 ≤ I < N")
    return index, count


@utf8_only
def parse_ks(text: str) -> tuple[int, ...]:
    """`1,5,10` → (1, 5, 10)."""
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be numbers like 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("--k needs cut-offs of at least 1")
    return ks


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    @utf8_only
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high:,}, got {value}")
        return value

    return parse


@utf8_only
def finite_number(text: str) -> float:
    """An argparse type: a number, not inf or nan."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}")
    return value


def cosine_score(text: str) -> float:
    """An argparse type: a cosine similarity, -1 to 1."""
    value = finite_number(text)
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a cosine from -1 to 1, got {text}")
    return value


@utf8_only
def day(text: str) -> date:
    """An argparse type: YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date like 2024-05-31, got {text!r}") from None


def folder_to_watch(text: str) -> Path:
    """An argparse type: a folder that is there now (once watched, one that goes away is waited for)."""
    path = typed_path(text)
    if not path.is_dir():
        why = "is not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{printable(path_to_text(path))} {why}: nothing to watch")
    return path


def checked(convert: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a converter that raises an `EmbedderError` people can act on."""

    @utf8_only
    def parse(text: str) -> T:
        try:
            return convert(text)
        except EmbedderError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


SEARCH_OPTIONS: set[str] = set()  # every option string of `search`, filled by build_parser
text = checked(str)  # an argparse type: any UTF-8 text


def _term(text: str) -> Any:
    if text.split("=", 1)[0] in SEARCH_OPTIONS:  # argparse hands over an option as a term only after `--`
        raise EmbedderError(
            f"{text} after -- is a search term, not an option: put options before --, "
            "e.g. search -k 3 --json -- rice -people"
        )
    from embedder.query.terms import parse_term  # loads torch: only when a search has terms

    return parse_term(text)


def _point_id(text: str) -> str:
    from embedder.query.terms import parse_point_id

    return parse_point_id(text)


def _file_types(text: str) -> list[str]:
    from embedder.query.filters import check_file_types

    return check_file_types(text.split(","))


def _collection_name(text: str) -> str:
    return collection_name("--collection", text)


def _threshold_arg(text: str) -> float:
    return checked_cosine("a near-duplicate threshold", finite_number(text))


def _exclude_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--exclude", action="append", default=[], type=text, metavar="GLOB",
        help="also skip folders and files matching GLOB (repeat it; on top of EXCLUDE): a name like "
        "'@eaDir' anywhere, or a path below the folder like '2019/private'",
    )


def _excludes(settings: Settings, args: argparse.Namespace) -> Any:
    """EXCLUDE's globs and those of --exclude."""
    from embedder.media.excludes import Excludes, split_globs

    return Excludes(settings.exclude).plus(g for text in args.exclude for g in split_globs(text))


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m embedder" if Path(sys.argv[0]).name == "__main__.py" else "embedder"  # as it was run
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"embedder {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="index image files and folders")
    index.add_argument("paths", nargs="+", type=typed_path, metavar="PATH", help="an image file or a folder")
    index.add_argument("--prune", action="store_true", help="forget images under PATHS whose files are gone")
    index.add_argument("--shard", type=parse_shard, help="I/N: index only this worker's share (by content hash)")
    index.add_argument("--json", action="store_true", help="print the report as JSON")
    index.add_argument(
        "--no-text", action="store_true",
        help="do not read the text in the pictures now (TEXT_IN_IMAGES=false never does; the next run reads it)",
    )
    _exclude_option(index)

    watch = commands.add_parser(
        "watch",
        help="index folders now, then keep indexing what changes in them until Ctrl-C",
        description="New, changed, moved and deleted files are indexed in batches after a quiet moment. "
        "With the embedded store only one process may use it: the app watches IMAGE_DIRS itself.",
    )
    watch.add_argument("paths", nargs="+", type=folder_to_watch, metavar="FOLDER", help="a folder to watch")
    watch.add_argument(
        "--poll", type=finite_number, default=None, metavar="SECONDS",
        help="look for changes every SECONDS instead of file events (network shares); default WATCH_POLL_S",
    )
    _exclude_option(watch)

    search = commands.add_parser(
        "search",
        help="find images by text, images and stored points",
        description="Terms add up: `beach 2:sunset -people` means beach, twice as much sunset, no people. "
        "Put `--` before terms that start with '-'.",
    )
    search.add_argument("terms", nargs="*", type=checked(_term), help="TEXT, -TEXT (subtract) or WEIGHT:TEXT")
    search.add_argument(
        "--image", action="append", default=[], type=typed_path, metavar="PATH", help="an image as a term"
    )
    search.add_argument(
        "--like", action="append", default=[], type=checked(_point_id), metavar="ID",
        help="a stored image's id as a term (--json prints ids)",
    )
    search.add_argument("-k", "--limit", type=whole_number(1, MAX_RESULTS), default=10, help="how many results (10)")
    search.add_argument("--offset", type=whole_number(0, MAX_RESULTS), default=0, help="skip this many results first")
    search.add_argument("--min-score", type=cosine_score, default=None, help="cosine, -1 to 1")
    search.add_argument("--template", type=text, default=None, help='e.g. "a photo of {}"')
    search.add_argument("--folder", type=typed_path, help="only images in this folder or below")
    search.add_argument("--type", dest="types", type=checked(_file_types), default=[], help="file types, e.g. jpeg,png")
    search.add_argument("--after", type=day, help="taken on or after YYYY-MM-DD")
    search.add_argument("--before", type=day, help="taken on or before YYYY-MM-DD")
    search.add_argument("--min-width", type=whole_number(0, MAX_SIDE_PX), metavar="PX", help="at least this wide")
    search.add_argument("--min-height", type=whole_number(0, MAX_SIDE_PX), metavar="PX", help="at least this tall")
    search.add_argument(
        "--tag", dest="tags", action="append", default=[], type=text, metavar="TAG",
        help="only images tagged TAG (repeat: all of them); `embedder tags` lists the tags",
    )
    search.add_argument(
        "--sort", choices=("relevance", "newest", "oldest"), default="relevance",
        help="order of the results that stand out: best first (default), or by the date taken",
    )
    search.add_argument(
        "--only", choices=("picture", "text", "name"),
        help="only results found by their looks, by the text in them, or by their file or folder names",
    )
    search.add_argument(
        "--all", action="store_true",
        help="also the weaker results: those that only look a little like the query, past where its scores fall off",
    )
    search.add_argument(
        "--no-dates", action="store_true",
        help="read dates typed in the query (2019, july 2023, last year) as words only, not as a date filter",
    )
    search.add_argument("--collapse", action="store_true", help="show one of each set of near-duplicates")
    search.add_argument(
        "--threshold", type=checked(_threshold_arg), help="near-duplicate cosine, default DUPLICATE_THRESHOLD"
    )
    output = search.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true",
        help="print each result as JSON: score, path, name, id, taken, matched (picture/text/name/tag) and text",
    )
    output.add_argument("--paths", action="store_true", help="print only paths, one per line (for xargs)")
    SEARCH_OPTIONS.update(word for action in search._actions for word in action.option_strings)  # noqa: SLF001

    dupes = commands.add_parser("duplicates", help="list groups of near-duplicate images")
    dupes.add_argument("--threshold", type=checked(_threshold_arg), help="cosine, default DUPLICATE_THRESHOLD")
    dupes.add_argument("--json", action="store_true", help="print the groups as JSON")

    evaluate = commands.add_parser(
        "eval",
        help="measure retrieval quality (P@K, R@K, mAP, MRR) on a labelled dataset",
        description="DATASET is a folder of class folders (the query is the class name) or a CSV with "
        "path,caption columns. It is indexed into a throw-away store unless --live is given.",
    )
    evaluate.add_argument("dataset", type=Path, help="a folder of class folders, or a CSV of path,caption")
    evaluate.add_argument(
        "--at", "--k", dest="k", type=parse_ks, default=(1, 5, 10), metavar="K,K,…", help="cut-offs, e.g. 1,5,10"
    )
    evaluate.add_argument(
        "--model", dest="models", action="append", default=[], type=text, metavar="MODEL",
        help="a model to compare, each in its own scratch store (repeat for a leaderboard; default EMBEDDER_MODEL)",
    )
    evaluate.add_argument(
        "--template", dest="templates", action="append", default=[], type=text, metavar="TEMPLATE",
        help='prompt template for text queries, e.g. "a photo of {}" (repeat to compare; "{}" is the bare label)',
    )
    evaluate.add_argument("--ensemble", action="store_true", help="also the mean of the templates' query vectors")
    evaluate.add_argument(
        "--compare-templates", action="store_true", help="text→image without and with the template side by side"
    )
    evaluate.add_argument("--live", action="store_true", help="index into and search the configured collection")
    evaluate.add_argument(
        "--per-query", action="store_true",
        help="also list every text query, worst first, and the groups of paraphrases whose wording matters most",
    )
    evaluate.add_argument(
        "--split", choices=SPLIT_NAMES,
        help="measure only this part of the dataset's split (made beside the dataset on first use and shared "
        "with `tune`): test holds pictures a tuned model never trained on",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="the seed a new split is made with (0)")
    evaluate.add_argument(
        "--plot", type=Path, metavar="DIR",
        help="also write PNGs into DIR: the leaderboard, P@K and R@K curves, AP per query, paraphrase spread",
    )
    evaluate.add_argument("--json", action="store_true", help="print the measures as JSON")

    backup = commands.add_parser(
        "backup",
        help="copy the index into one archive file (close the app first)",
        description="Writes the collection (QDRANT_COLLECTION) into DEST with a manifest of what it holds: "
        "the model, the image count and a SHA-256 of every file. The embedded store is checked, closed "
        "cleanly and copied while no other process can write to it; a server collection is saved as a "
        "snapshot and downloaded. An interrupted backup leaves no file named DEST.",
    )
    backup.add_argument(
        "dest", metavar="DEST",
        help="the file to write (.tar.gz; a name ending in .tar is not compressed), or a folder to put "
        "embedder-COLLECTION-DATE.tar.gz in",
    )
    backup.add_argument(
        "--force", action="store_true", help="replace DEST if it exists, once the new backup is complete"
    )

    restore = commands.add_parser(
        "restore",
        help="put a backup back as the index (close the app first)",
        description="Checks every file of the backup against its manifest before anything is changed. "
        "A store that holds images is never deleted: with --force it is renamed aside "
        "(COLLECTION.before-restore-DATE in QDRANT_PATH) or, on a server, saved as a snapshot first.",
    )
    restore.add_argument("source", metavar="SRC", help="a file written by `embedder backup`")
    restore.add_argument(
        "--force", action="store_true",
        help="restore over a collection that holds images (it is kept aside, not deleted)",
    )
    restore.add_argument(
        "--collection", type=checked(_collection_name), metavar="NAME",
        help="restore into this collection instead of QDRANT_COLLECTION (for a backup made with another model)",
    )

    tags = commands.add_parser(
        "tags",
        help="list the tags in the library with how many images carry each",
        description="Images are tagged as they are indexed (TAGS, TAGS_FILE); a later index run tags stored "
        "images that have none, from their stored vectors.",
    )
    tags.add_argument(
        "--refresh", action="store_true",
        help="first re-tag every image tagged by another vocabulary or model (or not at all), from its stored vector",
    )
    tags.add_argument("--json", action="store_true", help="print {tag: count} as JSON")

    label = commands.add_parser(
        "label",
        help="draft a label CSV (path,caption,group) for a folder's pictures, to correct and then eval or tune on",
        description="Each picture's captions are drafted from what the index knows about it: its tags, the "
        "text recognised in it and the words of its file name (a picture not indexed yet: its name only). "
        "Several captions of one picture are several rows; give captions that paraphrase one another the "
        "same group. Nothing is encoded: the index is only read.",
    )
    label.add_argument("folder", type=typed_path, metavar="FOLDER", help="the folder of pictures to label")
    label.add_argument("--out", type=Path, required=True, metavar="CSV", help="the label file to write")
    label.add_argument("--force", action="store_true", help="replace CSV if it exists")
    _exclude_option(label)

    tune = commands.add_parser(
        "tune",
        help="fine-tune the model on a labelled dataset's train split into a new model folder",
        description="Contrastive fine-tuning of EMBEDDER_MODEL on the dataset's train split (made beside it "
        "on first use and shared with `eval --split`), the best epoch and the mix of old and new weights "
        "chosen on the validation split; what the model knew is kept by distillation on unlabelled "
        "pictures (--keep, default a sample of the index) and on the tag vocabulary. Writes a model "
        "folder loadable as EMBEDDER_MODEL=DIR with a model card (README.md) comparing base and tuned "
        "on the test split. Index with it into a collection of its own (`embedder use`).",
    )
    tune.add_argument("dataset", type=Path, help="a label CSV (path,caption[,group]) or a folder of class folders")
    tune.add_argument("--out", type=Path, required=True, metavar="DIR", help="the model folder to write (must not exist)")
    tune.add_argument("--epochs", type=whole_number(1, 1000), default=5, help="passes over the train split (5)")
    tune.add_argument("--batch-size", type=whole_number(2, 4096), default=32, help="pictures per step (32)")
    tune.add_argument("--lr", type=finite_number, default=None, help="learning rate (default: by what is trained)")
    tune.add_argument(
        "--train", dest="trainable", choices=("auto", "last", "lora", "all"), default="auto",
        help="what is trained: the last blocks and projections, LoRA adapters, or everything (auto: "
        "all on CUDA, the last blocks on the CPU)",
    )
    tune.add_argument("--keep", type=typed_path, metavar="FOLDER", help="unlabelled pictures whose vectors should stay as they were (default: a sample of the index)")
    tune.add_argument("--keep-weight", type=finite_number, default=3.0, help="how much keeping what the model knew matters against learning (3.0)")
    tune.add_argument("--seed", type=int, default=0, help="the seed of the split (when made) and of training (0)")
    tune.add_argument("--resume", action="store_true", help="continue an interrupted run with the same settings from its last epoch")
    tune.add_argument("--json", action="store_true", help="print the result as JSON")

    collections = commands.add_parser(
        "collections",
        help="the collections in the store, the model that made each and how many images it holds",
        description="A tuned model indexes into a collection of its own; `embedder use` switches between them. "
        "Embedded counts are the ones recorded when a collection was last opened or closed.",
    )
    collections.add_argument("--json", action="store_true", help="print them as JSON")
    use = commands.add_parser(
        "use",
        help="switch the settings file to a collection and the model that made it (and back)",
        description="Writes QDRANT_COLLECTION and EMBEDDER_MODEL (and the text and visual models that go with "
        "them) into the settings file in use (or a new one in your config folder). Nothing is deleted; "
        "switching back is `embedder use` with the old name. A collection that does not exist yet needs "
        "--model; indexing with it then fills it.",
    )
    use.add_argument(
        "collection", type=checked(_collection_name), metavar="COLLECTION", help="the collection to use from now on"
    )
    use.add_argument("--model", metavar="MODEL", help="the model that made (or will fill) the collection: a name or folder")

    commands.add_parser("migrate", help="convert an old qdrant-client local-mode folder (QDRANT_PATH) to Qdrant Edge")
    backfill = commands.add_parser(
        "backfill-visual",
        help="give images indexed before EMBEDDER_VISUAL_MODEL was set its vector (CLIP vectors are kept)",
    )
    backfill.add_argument("--json", action="store_true", help="print what was done as JSON")

    info = commands.add_parser("info", help="storage, collection, model, image count and every path in use")
    info.add_argument("--json", action="store_true", help="print it as JSON")

    app = commands.add_parser("app", help="start the web app (Search, Duplicates, Index) on 127.0.0.1")
    app.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="passed to streamlit run, e.g. --server.port 8502")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Output into a pipe that closes early (`| head`) ends the
    command quietly, with the status of a program stopped by SIGPIPE."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe is found here, not in a traceback at exit
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 128 + signal.SIGPIPE


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C: the command stops after the batch in flight, its job kept."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Exit 2 on arguments no command takes; a search term that starts with '-' says to put -- first."""
    dashed = [word for word in extra if word.startswith("-")]
    if args.command == "search" and dashed:
        parser.error(
            f"{dashed[0]} is not an option of search; to subtract a term, put -- before the terms, "
            "e.g. search -k 3 -- beach -people"
        )
    parser.error(f"unrecognized arguments: {' '.join(extra)}")


def _check_paths(args: argparse.Namespace) -> None:
    """Before the model loads: `index` of only missing paths is one line (`watch` checks its folders as arguments)."""
    if args.command == "index" and all(missing(p) for p in args.paths):
        names = ", ".join(path_to_text(p) for p in args.paths)
        raise EmbedderError(f"no such file or folder: {names} (nothing was indexed)")


def _app_args(words: Sequence[str]) -> list[str] | None:
    """For `embedder [-v] app ARGS`: ARGS as they are (Streamlit's own options, which argparse would
    take for unknown options of ours); None for any other command, and for `app -h`."""
    for i, word in enumerate(words):
        if word not in ("-v", "--verbose"):
            rest = list(words[i + 1 :])
            return rest if word == "app" and rest[:1] not in (["-h"], ["--help"]) else None
    return None


def _main(argv: Sequence[str] | None) -> int:
    streamlit_args = _app_args(sys.argv[1:] if argv is None else argv)
    if streamlit_args is not None:
        return app_main(streamlit_args)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "migrate":  # before any store is opened: the old folder is refused until converted
        return run_migrate()
    if args.command == "app":
        return app_main(args.streamlit_args)
    with _sigterm_as_ctrl_c():
        return _run(args)


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While a command runs, SIGTERM (a service manager, `docker stop`) stops it as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _run(args: argparse.Namespace) -> int:
    try:
        _check_paths(args)
        settings = Settings.from_env()
        if args.command in ("collections", "use"):  # records and the settings file only: no lock, no model
            return run_collections(settings, args) if args.command == "collections" else run_use(settings, args)
        with ExitStack() as stack:
            if args.command == "eval":
                settings = _eval_settings(settings, args, stack)
            if args.command == "tune":  # a dataset or output that cannot be used says so before the model loads
                _tune_inputs(args)
            lock = None
            if not settings.qdrant_url:  # one process per folder: say "in use" now, not after loading the model
                lock = _folder_lock(settings)
                stack.callback(lock.release)  # the store releases it on close; this covers a failed open
            if args.command in ("backup", "restore"):  # no model: torch is never imported
                return run_backup(settings, args, lock)
            if args.command == "label":  # reads the index as recorded: no model either
                return run_label(settings, args, lock)
            if args.command == "info" or (args.command == "tags" and not args.refresh):
                answered = _read_only(settings, args, lock, stack)  # no model either, when the store allows
                if answered is not None:
                    return answered
            from embedder.engine import Engine  # after the lock: torch and the model load only now

            visual = _visual_layout(settings) if args.command == "backfill-visual" else None
            encoder = _query_encoder(settings, args)  # text-only searches and duplicates: no torch
            engine = Engine.open(settings, shard=getattr(args, "shard", None), encoder=encoder, lock=lock, visual=visual)
            stack.callback(engine.close)
            return COMMANDS[args.command](engine, args)
    except EmbedderError as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        code = 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        if args.command in ("backup", "restore"):
            print(f"interrupted: nothing was changed; run `{args.command}` again", file=sys.stderr)
            return code
        if args.command == "tune":
            print("interrupted: run the same command with --resume to continue after the last finished epoch",
                  file=sys.stderr)
            return code
        print("interrupted: run the same command again to finish (nothing is indexed twice)", file=sys.stderr)
        return code


def _read_only(settings: Settings, args: argparse.Namespace, lock: Any, stack: ExitStack) -> int | None:
    """`info` and `tags` from the store alone, opened with the model id and size its collection
    records: no model is loaded. None when only the model can open it (then they load it)."""
    from embedder.store import open_recorded

    try:
        store = open_recorded(settings, lock)
    except LookupError:
        return None
    if store is not None:
        stack.callback(store.close)
    if args.command == "info":
        from embedder.engine import describe  # the engine module imports no model library

        return show_info(describe(settings, store), args)
    from embedder.indexing.tags import tag_counts

    return show_tags(tag_counts(store) if store is not None else {}, args)


def _query_encoder(settings: Settings, args: argparse.Namespace) -> Any:
    """For a search without pictures, and for `duplicates`, the exported text tower alone when it is
    on disk (`embedder.models.load_query_encoder`); None: the full model loads as usual."""
    if settings.visual_model or not (args.command == "duplicates" or (args.command == "search" and not args.image)):
        return None
    from embedder.models import load_query_encoder

    return load_query_encoder(settings)


def _folder_lock(settings: Settings) -> Any:
    """The embedded folder's lock, or one line saying who holds it and what it is doing."""
    from embedder.store.lock import FolderLock

    try:
        return FolderLock(settings.qdrant_path)
    except StoreInUseError as exc:
        raise StoreInUseError(f"{exc}{_busy_with(settings)}") from None


def run_backup(settings: Settings, args: argparse.Namespace, lock: Any) -> int:
    """`backup` and `restore` (embedder/store/backup.py); the lock is held throughout."""
    from embedder.store import backup

    if args.command == "backup":
        made = backup.backup(settings, args.dest, force=args.force, lock=lock)
        print(printable(
            f"backed up {made.points} images (collection {made.collection}, model {made.model}) to {made.path} "
            f"({made.size / 2**20:.1f} MB)"
        ))
        return 0
    done = backup.restore(settings, args.source, force=args.force, collection=args.collection, lock=lock)
    if done.aside:
        print(printable(f"the collection that was there is kept: {done.aside} (delete it when you no longer need it)"))
    print(printable(
        f"restored {done.points} images (model {done.model}) into collection {done.collection} at {done.location}"
    ))
    if done.collection != settings.collection:
        print(printable(f"to search it: QDRANT_COLLECTION={done.collection} EMBEDDER_MODEL={done.model_setting}"))
    return 0


def _busy_with(settings: Settings) -> str:
    """What the process holding the store is indexing, from its job journal (empty if nothing or unknown)."""
    try:
        jobs = json.loads(settings.jobs_journal.read_text(encoding="utf-8")).get("jobs") or []
        labels = [str(job.get("label") or "") for job in jobs]
    except (OSError, ValueError, AttributeError, TypeError):
        return ""
    if not labels:
        return ""
    more = f" ({len(labels) - 1} more queued)" if len(labels) > 1 else ""
    return f" It is indexing {labels[0]}{more}."


def run_index(engine: Any, args: argparse.Namespace) -> int:
    """Index PATHS (the picture pass), then read the text in what they hold (the text pass); exit 1 if
    one of them is missing (the others are indexed, the report says which)."""
    from embedder.indexing.indexer import IndexReport

    absent = [p for p in args.paths if missing(p)]
    report = engine.indexer.index(
        args.paths, prune=args.prune, on_progress=None if args.json else _show_progress,
        exclude=_excludes(engine.settings, args),
    )
    text_pass = None if args.no_text else engine.text_pass
    if text_pass is not None:
        present = [p for p in args.paths if not missing(p)]
        read = text_pass.run(present, on_progress=None if args.json else _show_reading)
        report = IndexReport.merge([report, read])
    if args.json:
        _print_json(report.as_dict())
        return 1 if absent else 0
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for failure in report.failed:
        print(printable(f"failed: {failure.path}: {failure.reason}"))
    for failure in report.text_failed:
        print(printable(f"{failure.path}: {failure.reason}"))
    for path in report.removed:
        print(printable(f"removed: {path}"))
    print(report.summary())
    return 1 if absent else 0


def _show_progress(p: Progress) -> None:
    if not sys.stderr.isatty():
        return
    print(f"\r{p.words()}   ", end="", file=sys.stderr)


def _show_reading(p: Progress) -> None:
    if sys.stderr.isatty():
        print(f"\rreading text: {p.words().replace(' files', ' pictures')}   ", end="", file=sys.stderr)


def run_search(engine: Any, args: argparse.Namespace) -> int:
    from embedder.query.terms import Query, Term
    from embedder.query.filters import make_filter

    terms = list(args.terms)
    terms += [_image_term(path, engine.settings.max_image_pixels) for path in args.image]
    terms += [Term(point_id=pid) for pid in args.like]
    if not terms:
        raise EmbedderError("search needs at least one term: a text, --image PATH or --like ID")
    folder = path_to_text(os.path.abspath(args.folder)) if args.folder else None  # as the paths are stored
    query = Query(
        tuple(terms),
        template=args.template,
        where=make_filter(folder, args.types, args.after, args.before, args.min_width, args.min_height, args.tags),
        min_score=args.min_score,
        collapse=_threshold(engine, args) if args.collapse else None,
        only=args.only,
        cut=not args.all,
        sort=args.sort,
    )
    if not args.no_dates:
        query = query.with_typed_dates()
    pages = engine.searcher.pages(query, args.offset)
    results = pages.first(args.limit)[0]
    if query.dates and not args.json and not args.paths:
        print(printable(f"taken: {query.dates.label} (--no-dates reads it as words)"), file=sys.stderr)
    if pages.note:
        print(printable(pages.note), file=sys.stderr)
    if args.paths:  # the files themselves, byte for byte, whatever their names
        for r in results:
            sys.stdout.buffer.write(os.fsencode(text_to_path(r.path)) + b"\n")
        sys.stdout.flush()
        return 0
    if args.json:
        _print_json([r.as_dict() for r in results])
        return 0
    if not results:
        print("no matches" if engine.store.count() else "nothing indexed yet: run `python -m embedder index FOLDER`")
    for r in results:
        why = f"  [{', '.join(r.matched)}]" if r.matched and r.matched != ("picture",) else ""
        print(printable(f"{r.score:.3f}  {r.path}{why}"))
        if r.line is not None:
            print(printable(f"       “{r.line}”"))
    if pages.weaker:
        weaker = f"{pages.weaker} weaker result{'s' if pages.weaker != 1 else ''}"
        print(f"{weaker} left out (they only look a little like the query): --all shows them", file=sys.stderr)
    return 0


def _image_term(path: Path, max_pixels: int) -> Any:
    """An example image as a query term; one that cannot be read is an error naming it."""
    from embedder.media.images import decode
    from embedder.query.terms import Term

    try:
        return Term(image=decode(path, max_pixels).image, label=path_to_text(path.name))
    except ImageError as exc:
        raise ImageError(f"{path_to_text(path)}: {exc}") from None


def _threshold(engine: Any, args: argparse.Namespace) -> float:
    return engine.settings.duplicate_threshold if args.threshold is None else args.threshold


def run_duplicates(engine: Any, args: argparse.Namespace) -> int:
    from embedder.query.duplicates import near_duplicate_groups

    groups = near_duplicate_groups(engine.store, _threshold(engine, args))
    if args.json:
        _print_json([{"score": g.score, "paths": [p["paths"] for p in g.payloads]} for g in groups])
        return 0
    for g in groups:
        print(f"{len(g.ids)} images, cosine ≥ {g.score:.3f}:")
        for payload in g.payloads:
            print(printable(f"  {payload['paths'][0]}"))
    print(f"{len(groups)} groups of near-duplicates")
    return 0


def _eval_settings(settings: Settings, args: argparse.Namespace, stack: ExitStack) -> Settings:
    """The first model to evaluate, in a throw-away store unless --live; the text model stays only
    with the model it was set for. The dataset (and its split) are read first: a dataset that cannot
    be used says so before any model loads."""
    args.models = list(dict.fromkeys(args.models))
    if args.live and args.models:
        raise EmbedderError("eval --live measures the configured collection's model: leave out --model")
    if args.ensemble and len(args.templates) < 2:
        raise EmbedderError('--ensemble needs two or more --template, e.g. --template "{}" --template "a photo of {}"')
    args.labelled = _labelled(args.dataset, args.split, args.seed)
    if args.models and args.models[0] != settings.model:
        settings = replace(settings, model=args.models[0], text_model=None)
    if args.live:
        return settings
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embedder-eval-")))
    return replace(settings, qdrant_url=None, qdrant_path=scratch, collection="eval")


def _labelled(source: Path, split: str | None, seed: int) -> Any:
    """The dataset at `source`, or only its `split` part (see `evaluation.splits.labelled`)."""
    from embedder.evaluation.splits import labelled

    return labelled(source, split, seed)


def run_eval(engine: Any, args: argparse.Namespace) -> int:
    from embedder.evaluation.evaluate import evaluate_in_scratch, evaluate_model, overlap_k
    from embedder.evaluation.leaderboard import evaluation_document, format_per_query, format_robustness, format_table
    from embedder.evaluation.robustness import summary
    from embedder.query.terms import DEFAULT_TEMPLATE

    dataset = args.labelled
    templates = args.templates or [None]
    if args.compare_templates:
        templates = [None, templates[0] or DEFAULT_TEMPLATE]
    measured = [evaluate_model(engine, dataset, args.k, templates, args.ensemble, args.split)]
    failures = list(measured[0].report.failed)
    for model in args.models[1:]:  # each further model in its own scratch store, one loaded at a time
        other = replace(engine.settings, model=model)
        measured.append(evaluate_in_scratch(other, dataset, args.k, templates, args.ensemble, args.split))
        failures += [f for f in measured[-1].report.failed if f.path not in {g.path for g in failures}]
    evaluations = [e for m in measured for e in m.evaluations]
    by_template = {m.evaluations[0].model: m.templates for m in measured if m.templates}
    for failure in failures:
        print(printable(f"skipped: {failure.path}: {failure.reason}"), file=sys.stderr)
    if args.plot:
        from embedder.evaluation.plots import write_plots

        written = write_plots(evaluations, args.plot, measured[0].templates)
        print(printable(f"wrote {len(written)} plots to {args.plot}: {', '.join(p.name for p in written)}"), file=sys.stderr)
    if args.json:
        _print_json({
            "dataset": path_to_text(dataset.root), "split": args.split, "images": len(dataset.labels),
            "evaluations": [evaluation_document(e, per_query=args.per_query) for e in evaluations],
            "template_robustness": {
                model: {**summary(groups), **({"groups_detail": [g.as_dict() for g in groups]} if args.per_query else {})}
                for model, groups in by_template.items()
            },
        })
        return 0
    models = ", ".join(dict.fromkeys(e.model for e in evaluations))
    part = f" ({args.split} split)" if args.split else ""
    print(printable(f"{len(dataset.labels)} images{part}, {len(dataset.queries)} text queries, model {models}"))
    print(format_table(evaluations))
    k = overlap_k(args.k)
    for model, groups in by_template.items():
        figures = summary(groups)
        print(printable(
            f"templates as paraphrases, {model}: AP spread {figures['AP spread']:.3f}, "
            f"overlap@{k} {figures[f'overlap@{k}']:.3f} over {figures['groups']} labels"
        ))
    if args.per_query:
        for evaluation in (e for e in evaluations if e.mode == "text→image"):
            print()
            print(printable(f"text queries, {evaluation.model}, template {evaluation.template or '—'}, worst first:"))
            print(format_per_query(evaluation, k))
            if evaluation.paraphrases:
                print()
                print(printable(f"least robust groups of paraphrases, {evaluation.model}, template {evaluation.template or '—'}:"))
                print(format_robustness(evaluation.paraphrases))
        for model, groups in by_template.items():
            print()
            print(printable(f"labels whose template matters most, {model}:"))
            print(format_robustness(groups))
    return 0


def run_label(settings: Settings, args: argparse.Namespace, lock: Any) -> int:
    """`label`: a draft label CSV for a folder, from what the index knows (nothing is encoded)."""
    from embedder.evaluation.datasets import write_labels
    from embedder.evaluation.labels import draft_labels, draft_rows
    from embedder.store.catalog import open_as_recorded

    if not args.folder.is_dir():
        raise EmbedderError(printable(f"{path_to_text(args.folder)} is not a folder: name the folder of pictures to label"))
    if args.out.exists() and not args.force:  # before reading anything
        raise EmbedderError(printable(f"{path_to_text(args.out)} exists already; choose another name, or add --force to replace it"))
    store = open_as_recorded(settings, lock)
    try:
        drafts = draft_labels(args.folder, store, _excludes(settings, args))
    finally:
        if store is not None:
            store.close()
    if not drafts:
        raise EmbedderError(printable(f"{path_to_text(args.folder)} holds no pictures to label"))
    rows = draft_rows(drafts)
    written = write_labels(args.out, rows, force=args.force)
    unknown = sum(not d.indexed for d in drafts)
    empty = sum(not d.captions for d in drafts)
    print(printable(f"wrote {written}: {len(drafts)} pictures, {len(rows) - empty} drafted captions"))
    if unknown:
        print(printable(
            f"{unknown} of them are not in the index ({settings.collection}): drafted from their file names only; "
            f"`embedder index {path_to_text(args.folder)}` tags them"
        ), file=sys.stderr)
    if empty:
        print(f"{empty} pictures have no caption yet: fill them in (or leave them empty: then no query finds them)", file=sys.stderr)
    print(printable(f"correct the captions (same group = paraphrases), then: embedder eval {written}"), file=sys.stderr)
    return 0


def run_collections(settings: Settings, args: argparse.Namespace) -> int:
    """`collections`: every collection of the store with its model and image count; * marks the one in use."""
    from embedder.store.catalog import list_collections

    found = list_collections(settings)
    if args.json:
        _print_json([c.as_dict() for c in found])
        return 0
    if not found:
        print(printable(f"no collections yet in {settings.storage_location}: `embedder index FOLDER` makes {settings.collection!r}"))
        return 0
    width = max(10, *(len(c.name) for c in found))
    print(f"  {'collection':<{width}} {'images':>9}  model")
    for c in found:
        model = f"{c.model or '— (empty)'}" + (f" ({c.dim}-d)" if c.dim else "")
        visual = f", visual {c.visual_model}" if c.visual_model else ""
        print(printable(f"{'*' if c.current else ' '} {c.name:<{width}} {c.images:>9,}  {model}{visual}"))
    return 0


def run_use(settings: Settings, args: argparse.Namespace) -> int:
    """`use`: point the settings file at a collection and the model that made it."""
    from embedder.store.switching import switch_collection

    done = switch_collection(settings, args.collection, args.model)
    what = f"{done.images:,} images" if done.exists else "empty until you index into it"
    print(printable(f"now using collection {done.collection} ({what}) with model {done.model}: written to {done.settings_file}"))
    if done.previous != done.collection:
        print(printable(f"switch back with: embedder use {done.previous}"))
    for var in done.overridden:
        print(printable(f"warning: {var} is set in the environment, which wins over the settings file: unset it"), file=sys.stderr)
    return 0


def _tune_inputs(args: argparse.Namespace) -> None:
    """`tune`'s dataset, its split and the output folder, checked before any model loads."""
    from embedder.evaluation.splits import dataset_split
    from embedder.evaluation.tune import check_output

    if args.keep_weight < 0:
        raise EmbedderError(f"--keep-weight must be 0 or more, got {args.keep_weight:g}")
    if args.lr is not None and args.lr <= 0:
        raise EmbedderError(f"--lr must be above 0, got {args.lr:g}")
    args.out = args.out.expanduser().absolute()
    check_output(args.out, args.resume)
    args.labelled = _labelled(args.dataset, None, args.seed)
    args.parts = dataset_split(args.labelled, args.seed)


def run_tune(engine: Any, args: argparse.Namespace) -> int:
    """`tune`: fine-tune EMBEDDER_MODEL on the dataset's train split into a new model folder."""
    from embedder.evaluation.tune import TuneOptions, tune

    options = TuneOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, trainable=args.trainable, keep=args.keep,
        keep_weight=args.keep_weight, seed=args.seed, resume=args.resume, ks=(1, 5, 10),
    )
    counts = ", ".join(f"{n} {c}" for n, c in args.parts.counts().items())

    def progress(step: Any) -> None:
        if step.phase == "preparing":  # the model took the dataset: say which split it learns from
            print(printable(f"split {args.parts.path}: {counts} pictures"), file=sys.stderr)
        _show_tune_progress(step)

    result = tune(engine, args.labelled, args.parts, args.out, options, None if args.json else progress)
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        _print_json({"folder": str(result.folder), **result.card})
        return 0
    print(printable(f"tuned model written to {result.folder}: {result.summary()}"))
    name = result.folder.name
    print(printable(
        f"next: index with it into a collection of its own (EMBEDDER_MODEL={result.folder} QDRANT_COLLECTION={name} "
        f"embedder index FOLDER), compare (embedder eval {args.dataset} --split test --model {result.folder}), "
        f"then switch: embedder use {name} --model {result.folder}"
    ), file=sys.stderr)
    return 0


def _show_tune_progress(progress: Any) -> None:
    if not sys.stderr.isatty():
        if progress.phase == "epoch":  # a log of epochs, not of every step
            print(progress.words(), file=sys.stderr)
        return
    end = "\n" if progress.phase == "epoch" else ""
    print(f"\r{progress.words()}   ", end=end, file=sys.stderr, flush=True)


def _visual_layout(settings: Settings) -> Any:
    """`backfill-visual`, before the store opens: load the visual model and give an embedded
    collection made without the VISUAL vector a copy that has it (the folder lock is held)."""
    from embedder.errors import ConfigError
    from embedder.models import load_visual

    visual = load_visual(settings)
    if visual is None:
        raise ConfigError(
            "EMBEDDER_VISUAL_MODEL is not set: set it to an image model (e.g. facebook/dinov2-small) first"
        )
    if not settings.qdrant_url:
        from embedder.store import edge

        if edge.edge_available():
            from embedder.store.migrate import add_visual_vector

            def progress(done: int, total: int) -> None:
                if sys.stderr.isatty():
                    print(f"\rcopying the collection: {done}/{total}", end="", file=sys.stderr, flush=True)

            moved = add_visual_vector(settings, (visual.model_id, visual.dim), progress)
            if moved is not None:
                print(
                    printable(
                        f"{settings.collection}: {moved['points']} images copied into a store with visual vectors; "
                        f"the old copy is in {moved['backup']} (delete it once you are happy)"
                    )
                )
    return visual


def run_backfill_visual(engine: Any, args: argparse.Namespace) -> int:
    """`backfill-visual`: decode the files of images without a visual vector and run only the visual model."""
    from embedder.indexing.backfill import backfill_visual

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    settings = engine.settings
    report = backfill_visual(engine.store, engine.visual, settings.max_image_pixels, settings.workers, progress)
    if args.json:
        _print_json({"filled": report.filled, "failed": [{"path": p, "reason": r} for p, r in report.failed]})
        return 0
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for path, reason in report.failed:
        print(printable(f"failed: {path}: {reason}"))
    print(report.summary())
    return 0


def run_migrate() -> int:
    """`migrate`: convert an old qdrant-client local-mode QDRANT_PATH to Qdrant Edge, in place."""
    from embedder.store.migrate import migrate_local

    def progress(name: str, done: int, total: int) -> None:
        print(printable(f"\r{name}: {done}/{total}"), end="", file=sys.stderr, flush=True)

    try:
        counts = migrate_local(Settings.from_env(), progress)
    except EmbedderError as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 1
    print(file=sys.stderr)
    for name, n in counts.items():
        print(printable(f"{name}: {n} points moved to Qdrant Edge"))
    return 0


def run_watch(engine: Any, args: argparse.Namespace) -> int:
    """Index the folders, then follow them until Ctrl-C (or SIGTERM); one line per finished batch. A job
    cut short stays in the journal, and the next `watch` (or the app) finishes it."""
    if args.poll is not None:
        engine.settings = replace(engine.settings, watch_poll_s=max(0.0, args.poll))
    engine.settings = replace(engine.settings, exclude=_excludes(engine.settings, args).globs)
    engine.jobs.on_change = _print_job
    engine.watch(args.paths)
    print(printable(f"watching {', '.join(engine.watcher.roots)} ({engine.watcher.mode}); Ctrl-C stops"), file=sys.stderr)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        print("stopped watching: a batch cut short is finished by the next run", file=sys.stderr)
    return 0


def _print_job(job: Job) -> None:
    """A running job's progress on a terminal (as `index` shows it); one line per finished job."""
    if job.progress is not None and not job.finished:
        _show_progress(job.progress)
    if job.finished:
        if job.progress is not None and sys.stderr.isatty():
            print(file=sys.stderr)
        outcome = job.report.summary() if job.report else job.error or job.state
        print(printable(f"{job.request.label}: {outcome}"), flush=True)
        for failure in job.report.failed if job.report else []:
            print(printable(f"failed: {failure.path}: {failure.reason}"), flush=True)


def run_tags(engine: Any, args: argparse.Namespace) -> int:
    """`tags`: every tag with its count, most first; with --refresh, re-tag what another vocabulary made."""
    from embedder.indexing.tags import tag_counts

    if args.refresh:
        if engine.indexer.tagger is None:
            raise EmbedderError("tagging is off (TAGS=false, or TAGS_FILE has no labels): nothing to refresh with")
        done = engine.indexer.retag(refresh=True)
        print(f"re-tagged {done:,} image{'' if done == 1 else 's'}", file=sys.stderr)
    return show_tags(tag_counts(engine.store), args)


def show_tags(counts: dict[str, int], args: argparse.Namespace) -> int:
    if args.json:
        _print_json(counts)
        return 0
    if not counts:
        print("no tags yet: `embedder index FOLDER` tags images as it indexes them (TAGS=true)")
    for tag, count in counts.items():
        print(printable(f"{count:>7,}  {tag}"))
    return 0


def run_info(engine: Any, args: argparse.Namespace) -> int:
    return show_info(engine.info(), args)


def show_info(info: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        _print_json(info)
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(printable(f"{key:>{width}}: {value}"))
    return 0


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


COMMANDS = {
    "index": run_index,
    "search": run_search,
    "duplicates": run_duplicates,
    "eval": run_eval,
    "tune": run_tune,
    "info": run_info,
    "tags": run_tags,
    "watch": run_watch,
    "backfill-visual": run_backfill_visual,
}


# What .streamlit/config.toml sets for a checkout, for the app started from any folder: this machine
# only, no usage statistics sent, no "Deploy" button (and its links to Streamlit's cloud).
APP_OPTIONS = {"server.address": "127.0.0.1", "browser.gatherUsageStats": "false", "client.toolbarMode": "viewer"}


def app_main(argv: Sequence[str] | None = None) -> int:
    """`embedder-app` / `embedder app`: the Streamlit app from anywhere, on 127.0.0.1, usage stats off."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "embedder_ui" / "app.py"
    options = [word for name, value in APP_OPTIONS.items() for word in (f"--{name}", value)]
    command = [sys.executable, "-m", "streamlit", "run", str(script), *options, *(argv or [])]
    app = subprocess.Popen(command, env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    # the app stops as it would itself; the caller's own handler is back once it has
    before = signal.signal(signal.SIGTERM, lambda signum, frame: app.send_signal(signum))
    try:
        return app.wait()
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached the app as well: it stops, keeping its job
        try:
            return app.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: now
            app.kill()
            return 130
    finally:
        signal.signal(signal.SIGTERM, before)
