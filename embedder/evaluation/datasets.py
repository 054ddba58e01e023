"""Labelled pictures as data: the datasets `eval` and `tune` read, and the label CSV they are saved as.

A dataset is a folder of class folders (`beach/001.jpg`; the label is the class name) or a CSV of
`path,caption[,group]` rows (paths relative to the CSV's folder; a picture may have several rows or
`a|b` captions; a row with an empty caption is a picture no caption describes). Each distinct caption
is a text query whose relevant pictures are the ones it describes. Captions that share a `group`
paraphrase one another ("a black cat on a sofa" / "sofa with a black cat"): `eval` measures how much
the results change between them. Labels that differ only in case or spacing are refused: they would
split one thing into two queries that each find half of it.

Nothing here imports torch or opens a store.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedder.durable import written_whole
from embedder.errors import DatasetError
from embedder.media.images import discover
from embedder.paths import path_to_text

log = logging.getLogger(__name__)

COLUMNS = ("path", "caption", "group")
CAPTION_SEPARATOR = "|"


def normalised(label: str) -> str:
    """A label as it is compared: spaces collapsed, case folded (`Black  Cat` is `black cat`)."""
    return " ".join(label.split()).casefold()


@dataclass
class Dataset:
    root: Path  # the folder whose pictures are indexed and searched (the CSV's folder, or the class folders')
    labels: dict[str, set[str]] = field(default_factory=dict)  # absolute path → captions / classes
    groups: dict[str, str] = field(default_factory=dict)  # caption → the group of paraphrases it belongs to
    source: Path | None = None  # the CSV file or the folder it was read from
    restricted: bool = False  # only some of the source's pictures (one split): search only these

    @property
    def queries(self) -> list[str]:
        return sorted({label for labels in self.labels.values() for label in labels})

    def paraphrases(self) -> dict[str, list[str]]:
        """Each group of two or more captions that are queries here: group → its captions, sorted."""
        queries = set(self.queries)
        found: dict[str, list[str]] = {}
        for caption, group in sorted(self.groups.items()):
            if caption in queries:
                found.setdefault(group, []).append(caption)
        return {group: captions for group, captions in sorted(found.items()) if len(captions) > 1}

    def stratum(self, path: str) -> str:
        """What a picture is split by: its first label (by group where it has one), '' if it has none."""
        keys = sorted(normalised(self.groups.get(label, label)) for label in self.labels.get(path, ()))
        return keys[0] if keys else ""

    def relative(self, path: str) -> str:
        """A picture's path relative to the dataset's folder, with forward slashes."""
        return Path(os.path.relpath(path, path_to_text(self.root))).as_posix()  # both as paths are stored

    def subset(self, paths: Iterable[str]) -> Dataset:
        """The same dataset restricted to `paths` (a split): its queries are the captions those pictures have."""
        keep = set(paths)
        labels = {path: set(captions) for path, captions in self.labels.items() if path in keep}
        return Dataset(self.root, labels, dict(self.groups), self.source, restricted=True)


def load_dataset(source: Path) -> Dataset:
    """Read a folder of class folders, or a `path,caption[,group]` CSV (DatasetError if it cannot be used)."""
    source = source.expanduser().resolve()
    if source.is_file():
        dataset = _from_csv(source)
    elif not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder or CSV file")
    else:
        dataset = Dataset(source, source=source)
        for path in discover([source]):
            relative = path.relative_to(source)
            if len(relative.parts) >= 2:
                dataset.labels[path_to_text(path)] = {path_to_text(relative.parts[0])}  # as paths are stored
        if not dataset.labels:
            raise DatasetError(f"{source}: no images in class folders (expected {source}/<class>/<image>)")
    check_spellings(source, dataset.queries)
    return dataset


def check_spellings(source: Path, labels: Iterable[str]) -> None:
    """Labels that differ only in case or spacing are one DatasetError line naming two of them."""
    seen: dict[str, str] = {}
    for label in sorted(labels):
        first = seen.setdefault(normalised(label), label)
        if first != label:
            raise DatasetError(
                f"{source}: the labels {first!r} and {label!r} differ only in case or spacing; write them the same "
                "way (they would be two queries that each find part of the same pictures)"
            )


def _from_csv(path: Path) -> Dataset:
    dataset = Dataset(path.parent, source=path)
    reader = None
    # No field is longer than the file: a long caption is read, whatever the csv module's default limit.
    default_limit = csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.reader(fh)
            header = [name.strip().lower() for name in next(reader, [])]
            if not {"path", "caption"} <= set(header):
                raise DatasetError(f"{path}: a CSV dataset needs the columns path,caption (and optionally group)")
            for row in reader:
                if row:
                    image, captions, group = _csv_row(path, reader.line_num, header, row)
                    dataset.labels.setdefault(image, set()).update(captions)
                    for caption in captions if group else ():
                        _join_group(dataset, path, reader.line_num, caption, group)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text; save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}, line {reader.line_num if reader else 1}: not valid CSV ({exc})") from None
    finally:
        csv.field_size_limit(default_limit)
    if not dataset.labels:
        raise DatasetError(f"{path}: no rows")
    return dataset


def _join_group(dataset: Dataset, path: Path, line: int, caption: str, group: str) -> None:
    """A caption belongs to one group of paraphrases: a second, different one is a DatasetError."""
    before = dataset.groups.setdefault(caption, group)
    if before != group:
        raise DatasetError(
            f"{path}, line {line}: the caption {caption!r} is in group {before!r} already, not {group!r}; "
            "a caption paraphrases one group of captions"
        )


def _csv_row(path: Path, line: int, header: list[str], row: list[str]) -> tuple[str, set[str], str]:
    """One row → (the picture's absolute path, its captions, its group or ''); a malformed row is a DatasetError."""
    if len(row) != len(header):
        hint = ": put a caption with commas in double quotes" if len(row) > len(header) else ""
        raise DatasetError(f"{path}, line {line}: the header has {len(header)} columns but this row has {len(row)}{hint}")
    fields = dict(zip(header, row))
    if not fields["path"].strip():
        raise DatasetError(f"{path}, line {line}: the path is empty")
    image = path_to_text(os.path.normpath(path.parent / fields["path"]))
    captions = {" ".join(c.split()) for c in fields["caption"].split(CAPTION_SEPARATOR) if c.strip()}
    return image, captions, " ".join(fields.get("group", "").split())


@dataclass(frozen=True)
class LabelRow:
    """One row of a label CSV: a picture (absolute path), one caption ('' for none yet), its group or ''."""

    path: str
    caption: str
    group: str = ""


def labels_csv(rows: Sequence[LabelRow], folder: Path) -> str:
    """The CSV text of `rows`, paths relative to `folder` (where the CSV will be), as `load_dataset` reads it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        if CAPTION_SEPARATOR in row.caption:
            raise DatasetError(f"the caption {row.caption!r} holds {CAPTION_SEPARATOR!r}, which separates captions")
        relative = Path(os.path.relpath(row.path, folder)).as_posix()
        writer.writerow((relative, " ".join(row.caption.split()), " ".join(row.group.split())))
    return buffer.getvalue()


def write_labels(target: Path, rows: Sequence[LabelRow], force: bool = False) -> Path:
    """Write a label CSV at `target`, whole or not at all; an existing file is refused unless `force`."""
    target = target.expanduser().absolute()
    if target.is_dir():
        raise DatasetError(f"{target} is a folder; name the CSV file to write, e.g. {target / 'labels.csv'}")
    if target.exists() and not force:
        raise DatasetError(f"{target} exists already; choose another name, or add --force to replace it")
    text = labels_csv(rows, target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"Cannot write {target}: {exc.strerror or exc} (nothing was written)") from None
    log.info("wrote %d label rows to %s", len(rows), target)
    return target


def rows_of(dataset: Dataset) -> list[LabelRow]:
    """A dataset as label rows (one per picture and caption; a picture without captions gets one empty row)."""
    rows: list[LabelRow] = []
    for path in sorted(dataset.labels):
        captions = sorted(dataset.labels[path]) or [""]
        rows += [LabelRow(path, caption, dataset.groups.get(caption, "")) for caption in captions]
    return rows

