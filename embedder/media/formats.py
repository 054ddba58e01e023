"""Which files are pictures the indexer reads, which it skips on purpose (and why), and which it ignores.

The picture extensions come from the installed decoders: every extension Pillow registers (with
pillow-heif's HEIF opener added) for a format the product decodes, plus the camera RAW formats
LibRaw reads (rawpy). LibRaw names no extensions of its own, so those are listed here. Files of a
kind people keep beside their photos but that are not indexed (videos, SVG drawings, PDFs, image
formats whose decoders are not used) are *skipped*, each with a reason, so a report can say that
40 videos were left out; anything else (sidecars such as .xmp or .aae, notes, databases) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pillow_heif import register_heif_opener

register_heif_opener()  # HEIC/HEIF: what phones write

# The Pillow formats decoded, whatever a file is named: not every decoder Pillow has (PSD, EPS, FITS,
# JPEG 2000, …), whose costs on hostile input nobody here has measured. A JPEG may turn out to be an MPO.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")
# Formats that open through one of FORMATS: their files are pictures too (.mpo: a JPEG with extras).
OPENED_AS = {"MPO": "JPEG"}
# Camera RAW files, decoded with LibRaw (rawpy): extension → the format stored and shown for them.
RAW_FORMATS = {
    ".cr2": "CR2", ".cr3": "CR3", ".crw": "CRW",  # Canon
    ".nef": "NEF", ".nrw": "NRW",  # Nikon
    ".arw": "ARW", ".srf": "SRF", ".sr2": "SR2",  # Sony
    ".dng": "DNG",  # Adobe's, written by Leica, Pentax, Ricoh, phones and converters
    ".raf": "RAF",  # Fujifilm
    ".orf": "ORF",  # Olympus / OM System
    ".rw2": "RW2", ".rwl": "RWL",  # Panasonic, Leica
    ".pef": "PEF",  # Pentax
    ".srw": "SRW",  # Samsung
    ".3fr": "3FR",  # Hasselblad
    ".iiq": "IIQ",  # Phase One
    ".erf": "ERF",  # Epson
    ".mrw": "MRW",  # Minolta
    ".x3f": "X3F",  # Sigma
}
RAW = "RAW"  # the file type that stands for every camera RAW format in filters


def _pillow_extensions() -> dict[str, str]:
    """Extension → Pillow format, for every extension the installed Pillow (and plugins) registers."""
    return {ext.lower(): fmt for ext, fmt in Image.registered_extensions().items()}


_REGISTERED = _pillow_extensions()
PILLOW_EXTENSIONS = {
    ext: OPENED_AS.get(fmt, fmt) for ext, fmt in _REGISTERED.items() if OPENED_AS.get(fmt, fmt) in FORMATS
}
RAW_EXTENSIONS = frozenset(RAW_FORMATS)
IMAGE_EXTENSIONS = frozenset(PILLOW_EXTENSIONS) | RAW_EXTENSIONS


SKIP_SUFFIX = " are not indexed"


@dataclass(frozen=True)
class Skip:
    """A kind of file the indexer leaves out on purpose."""

    what: str  # plural, as a report lists them: "videos"

    @property
    def reason(self) -> str:
        return f"{self.what}{SKIP_SUFFIX}"


VIDEO = Skip("videos")
SVG = Skip("SVG drawings")
PDF = Skip("PDF documents")
_SKIPPED = {
    **dict.fromkeys(
        (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp", ".3g2", ".mts", ".m2ts", ".mpg", ".mpeg",
         ".wmv", ".flv", ".ogv", ".vob", ".mxf", ".insv", ".lrv"),
        VIDEO,
    ),
    ".svg": SVG, ".svgz": SVG,
    ".pdf": PDF,
    ".psd": Skip("Photoshop documents"), ".psb": Skip("Photoshop documents"),
    ".xcf": Skip("GIMP documents"),
    ".jxl": Skip("JPEG XL images"),
}
# Pillow plugins for files that are not pictures (data formats, metadata, video): not worth a line.
_NOT_PICTURES = frozenset({"BUFR", "GRIB", "HDF5", "IPTC", "MPEG", "PDF"})
# Other pictures Pillow knows by name (JPEG 2000, ICO, TGA, EPS, …) but whose decoders are not used.
_SKIPPED_PILLOW = {
    ext: Skip(f"{fmt} images")
    for ext, fmt in _REGISTERED.items()
    if ext not in IMAGE_EXTENSIONS and fmt not in _NOT_PICTURES
}


def suffix(name: str) -> str:
    return Path(name).suffix.lower()


def is_image_name(name: str) -> bool:
    """Whether a file of this name is a picture the indexer reads (by its extension)."""
    return suffix(name) in IMAGE_EXTENSIONS


def is_raw_name(name: str) -> bool:
    return suffix(name) in RAW_EXTENSIONS


def skipped(name: str) -> Skip | None:
    """Why a file of this name is left out on purpose; None for pictures and for files ignored silently."""
    ext = suffix(name)
    if ext in IMAGE_EXTENSIONS:
        return None
    return _SKIPPED.get(ext) or _SKIPPED_PILLOW.get(ext)


NOT_AN_IMAGE = Skip("files that are not pictures")  # only for a file named on its own


def file_types() -> list[str]:
    """The file types people can filter by: one per format the indexer stores, RAW for all camera formats."""
    return sorted(set(PILLOW_EXTENSIONS.values()) | {RAW})
