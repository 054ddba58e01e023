"""What indexing never reads: hidden names and the folders and files matched by exclude globs.

A glob without a slash names one path component, anywhere below the folder being indexed:
`@eaDir` skips every folder (or file) called `@eaDir`, `*.tmp.jpg` every such file. A glob with
a slash is matched against the path relative to that folder, one component per `/`-separated part
(`*` and `?` never cross a `/`, `**` stands for any number of folders): `2019/private`,
`*/raw`, `**/exports/*.png`. Matching ignores case (`$RECYCLE.BIN` is `$Recycle.Bin` on newer
Windows). A matching folder is pruned from the walk: it is never listed, nor anything below it.
Names starting with `.` are always skipped (`.thumbnails`, `.Trash-1000`, `.DS_Store`, AppleDouble
`._IMG_1.jpg`, `.git`, QNAP's `.@__thumb`), whatever the globs say.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase, translate
from pathlib import Path

# What NAS boxes and operating systems leave among photos, none of it a photo anybody took: thumbnails
# that would land in search results as copies, recycle bins and snapshots that hold old copies of the
# whole library. (Hidden names are skipped anyway; see the module's docstring.)
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "@eaDir",  # Synology: a thumbnail folder beside every photo (SYNOPHOTO_THUMB_XL.jpg, …)
    "#recycle",  # Synology: the shared folder's recycle bin
    "#snapshot",  # Synology: read-only snapshots of the shared folder
    "@Recycle",  # QNAP: the recycle bin
    "@Recently-Snapshot",  # QNAP: snapshots
    "$RECYCLE.BIN",  # Windows: the recycle bin on every drive
    "System Volume Information",  # Windows: restore points on every drive
    "lost+found",  # ext2/3/4: fragments fsck recovered
    "Thumbs.db",  # Windows: the thumbnail cache (not an image, listed for people reading the list)
)
NONE = "none"  # the EXCLUDE value that means no globs at all (hidden names are still skipped)


def split_globs(text: str) -> tuple[str, ...]:
    """Globs from a setting or an option: separated by commas or the path separator, blanks dropped."""
    return tuple(g for part in text.replace(os.pathsep, ",").split(",") if (g := _normal(part)))


def _normal(glob: str) -> str:
    glob = glob.strip().replace(os.sep, "/")
    while glob.startswith("./"):
        glob = glob[2:]
    return glob.strip("/")


class Excludes:
    """A set of exclude globs, matched case-insensitively against paths relative to a root.

    `anchors`: folders that globs with a slash are relative to when a path lies inside one (a
    watched folder, when only a folder inside it is indexed); otherwise the root being walked is.
    """

    def __init__(self, globs: Iterable[str] = (), anchors: Iterable[Path | str] = ()) -> None:
        self.globs = tuple(dict.fromkeys(g for g in map(_normal, globs) if g))
        self.anchors = tuple(os.path.abspath(a) for a in anchors)
        names = [translate(g.casefold()) for g in self.globs if "/" not in g]  # one regex: a walk asks per entry
        self._names = re.compile("|".join(names)) if names else None
        self._paths = tuple(tuple(g.casefold().split("/")) for g in self.globs if "/" in g)

    def __repr__(self) -> str:
        return f"Excludes({list(self.globs)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Excludes) and (self.globs, self.anchors) == (other.globs, other.anchors)

    def __hash__(self) -> int:
        return hash((self.globs, self.anchors))

    def plus(self, globs: Iterable[str]) -> Excludes:
        """These globs and `globs`."""
        return Excludes((*self.globs, *globs), self.anchors)

    def anchored(self, anchors: Iterable[Path | str]) -> Excludes:
        return Excludes(self.globs, anchors)

    def skips(self, parts: Sequence[str]) -> bool:
        """Whether the entry at relative path `parts` is skipped, its parent folders not being."""
        if not parts:
            return False
        name = parts[-1]
        if name.startswith("."):
            return True
        folded = name.casefold()
        if self._names is not None and self._names.match(folded):
            return True
        if self._paths:
            path = [p.casefold() for p in parts]
            return any(_matches(glob, path) for glob in self._paths)
        return False

    def covers(self, parts: Sequence[str]) -> bool:
        """Whether the relative path `parts` is skipped or lies inside a skipped folder."""
        return any(self.skips(parts[: i + 1]) for i in range(len(parts)))

    def excludes(self, path: Path | str, root: Path | str) -> bool:
        """Whether the absolute `path` below `root` (or below an anchor holding it) is never indexed."""
        path = os.path.abspath(path)
        base = self.base(path, root)
        relative = os.path.relpath(path, base)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            return False
        return self.covers(Path(relative).parts)

    def base(self, path: str, root: Path | str) -> str:
        """What `path`'s relative path is taken from: the outermost anchor holding it, else `root`."""
        holding = [a for a in self.anchors if (path + os.sep).startswith(os.path.join(a, ""))]
        return min(holding, key=len) if holding else os.path.abspath(root)


def _matches(glob: Sequence[str], parts: Sequence[str]) -> bool:
    """`glob`'s parts against a path's, part by part; `**` stands for any number of parts."""
    if not glob:
        return not parts
    if glob[0] == "**":
        return any(_matches(glob[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], glob[0]) and _matches(glob[1:], parts[1:])
