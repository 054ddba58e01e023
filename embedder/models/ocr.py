"""Text in pictures: RapidOCR's PP-OCRv6 models on ONNX Runtime, one picture at a time, within budgets.

`TextReader.read(image)` takes a decoded picture (`embedder.media.images.decode` gives it RGB and
upright by its EXIF orientation; any other PIL mode is converted here) and returns a `TextReading`:
the lines it recognised, each with its text, its box (four corners, in the given picture's pixels)
and a confidence, lines under `min_confidence` or without a letter or digit left out.

How a picture is read, and what each step costs, on two CPU cores (bench/ocr_quality.py):

1. **Pixel budgets.** Detection never sees more than `DETECT_MAX_PIXELS` (below), and recognition
   crops its lines from a copy of at most `max_pixels`. A picture with a side under `MIN_TEXT_SIDE`
   pixels cannot hold text and is not looked at (`TextReading.skipped` says so).
2. **First look.** Detection alone on a small copy (shorter side `first_look_side`). Only boxes
   that look like lines count: a box score of at least 0.6 (the detection keeps 0.5) and no thicker
   than 40 % of the picture (grain and texture light the detector up over whole photos). None: the
   reading ends here, with no recognition — most photos hold no text, and this is what they cost. A
   picture so small that the look would cost over half the detection goes straight to detection.
3. **Detection** at `detect_side` on the shorter side (smaller pictures at their own size; at most
   `DETECT_MAX_PIXELS`, for long screenshots and panoramas): the DB detector's rotated boxes, so text
   at small angles is boxed along its slant and straightened when it is cropped.
4. **Recognition**, in chunks of similar widths. A crop taller than wide (1.5×) is turned a quarter
   (RapidOCR's rule) and the direction classifier turns upside-down lines (a turned line is read
   both ways, the more confident reading kept): pictures stored at 90, 180 or 270 degrees without an
   EXIF tag are read line by line, without reading the whole picture four times. Decided by trying:
   turned screenshots read as well as upright ones, and upright pictures pay only the classifier
   (about 1 ms a line).

**Time budget.** Every ONNX Runtime run of a reading stops at the reading's deadline
(`RunOptions.terminate`, set by a timer), and the deadline is checked before each step, so a reading
ends within `time_budget_s` plus the one step of numpy work under way: resizing and normalising the
detection's input, or cropping. bench/ocr_quality.py measured up to 0.15 s past budgets of 0.2-2 s and
0.25 s past a 0.05 s one (the resizing of a 2 MP detection input), at load 8-11. Lines already
recognised are kept and `TextReading.stopped` says why the rest is missing. A picture whose pixels
cannot be read, or that the models fail on, raises `TextReadError`: it fails alone, and its picture
vector is not touched.

Importing this module loads nothing: ONNX Runtime and RapidOCR are imported when a reader is made.
It never imports torch. A reader can be shared by threads (each reading keeps its own deadline).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedder.errors import ModelLoadError, TextReadError
from embedder.models.ort import import_onnxruntime

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")  # cuda:N picks a GPU
# Which reader read a picture's text (stored with it): raise it when the reader reads better, and the
# next index run reads every picture again (embedder/indexing/text_pass.py).
VERSION = "ppocrv6-1"
# Defaults, chosen on bench/ocr_quality.py's tuning split (BENCHMARKS.md, "Text in pictures").
DETECT_SIDE = 736  # the detection input's shorter side (Immich's and RapidOCR's 736; 640 read as well, 7 % cheaper)
# …and its area at most (long screenshots, panoramas). Detecting holds about a quarter of a GB a
# megapixel (measured: 0.5 GB at 2 MP, 0.9 GB at 4 MP); at 2 MP a 1080×5000 screenshot's 40-px text is 24 px.
DETECT_MAX_PIXELS = 2_000_000
FIRST_LOOK_SIDE = 448  # the first look's shorter side; 0: no first look (320 missed signs across the street)
MAX_PIXELS = 16_000_000  # recognition crops lines from a copy of larger pictures scaled down to this
# The shorter side the text pass should decode pictures at (`decode(..., min_side=DECODE_SIDE)`: a JPEG
# is then decoded at a reduced scale, much faster than whole): about twice the detection's, so the
# lines recognition crops keep the detail the detection could not see.
DECODE_SIDE = 1440
MIN_CONFIDENCE = 0.8  # recognised lines below this are left out (0.5-0.7 kept junk on photos, 0.9 lost words)
TIME_BUDGET_S = 10.0  # per picture; 0: none
MIN_TEXT_SIDE = 8  # pixels: a picture narrower than this holds no readable text
# Detection thresholds (RapidOCR's DB post-processing: pixel probability, mean box score). The
# detection's are RapidOCR's defaults; the first look's box score is higher, which on the tuning split
# kept every sign while ending the reading of many more photos at the first look.
FIRST_LOOK_THRESHOLDS = (0.3, 0.6)
DETECT_THRESHOLDS = (0.3, 0.5)
# A first-look box thicker than this share of the picture's shorter side is no line of text: grain and
# texture can light up the detector over most of a photo (half of bench/ocr_quality.py's photos, at 0.67-0.84).
FIRST_LOOK_MAX_THICKNESS = 0.4
RECOGNISE_CHUNK = 24  # lines recognised per step (in RapidOCR's batches of 6), sorted by width
TALL = 1.5  # a crop this many times taller than wide is turned a quarter before recognition
PAD_TO = 64  # the detector sees at least this many pixels on each side (thin strips are padded)


@dataclass(frozen=True)
class TextLine:
    """One recognised line: its text, its box and how sure the recogniser is (0..1)."""

    text: str
    box: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
    # Corners in the picture's pixels, clockwise from the top-left of the picture (not of the text's
    # reading direction), as the detector orders them.
    confidence: float

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """The upright rectangle around the box: x, y, width, height."""
        xs, ys = [x for x, _ in self.box], [y for _, y in self.box]
        return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (a point's payload): ``{"text", "box": [[x, y] ×4], "confidence"}``."""
        return {"text": self.text, "box": [list(p) for p in self.box], "confidence": round(self.confidence, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextLine:
        box = tuple((int(x), int(y)) for x, y in data["box"])
        return cls(str(data["text"]), box, float(data["confidence"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReadingStats:
    """What a reading did: which steps ran, how many boxes and lines each saw, how long it took."""

    first_look: bool = False  # a first look ran
    first_look_boxes: int = 0  # boxes it found (0: the reading stopped there)
    detected: int = 0  # boxes the detection found
    recognised: int = 0  # crops that went through recognition (0 for a picture without text)
    turned: int = 0  # of those, lines turned a quarter or upside down to be read
    detect_size: tuple[int, int] = (0, 0)  # the detection input's width and height (0, 0: none ran)
    seconds: float = 0.0

    @property
    def recognition_skipped(self) -> bool:
        """Whether the first look found nothing, so nothing was recognised."""
        return self.first_look and self.first_look_boxes == 0


@dataclass(frozen=True)
class TextReading:
    """The text read from one picture: its lines, top to bottom as detected."""

    lines: tuple[TextLine, ...]
    size: tuple[int, int]  # the picture's width and height, which the boxes refer to
    stats: ReadingStats = field(default_factory=ReadingStats)
    stopped: str | None = None  # why the reading ended early (the time budget); the lines read are kept
    skipped: str | None = None  # why the picture was not looked at (too small to hold text)

    @property
    def text(self) -> str:
        """All lines, one per line."""
        return "\n".join(line.text for line in self.lines)

    @property
    def complete(self) -> bool:
        return self.stopped is None


class _OutOfTime(Exception):
    """The reading's deadline passed (before or during an ONNX Runtime run)."""


class _DeadlineSession:
    """An ONNX Runtime session whose every run stops at the calling thread's reading deadline.

    RapidOCR's detector, classifier and recogniser call their session with one input array; this one
    arms a timer that sets `RunOptions.terminate` when the deadline comes, which ONNX Runtime checks
    between the graph's nodes.
    """

    def __init__(self, session: Any, run_options: Callable[[], Any], deadlines: threading.local) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name
        self._run_options = run_options
        self._deadlines = deadlines

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        deadline = getattr(self._deadlines, "at", math.inf)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _OutOfTime
        options = self._run_options()
        timer = None
        if math.isfinite(remaining):
            timer = threading.Timer(remaining, setattr, (options, "terminate", True))
            timer.daemon = True
            timer.start()
        try:
            return self.session.run(None, {self._input: inputs}, options)[0]
        except Exception:
            if options.terminate:
                raise _OutOfTime from None
            raise
        finally:
            if timer is not None:
                timer.cancel()


class TextReader:
    """Reads the text in pictures with RapidOCR's shipped PP-OCRv6 models (never downloads anything).

    `device`: ``auto`` (the CUDA provider where onnxruntime-gpu and a GPU are present, else the CPU),
    ``cpu``, ``cuda`` or ``cuda:N``. `threads`: ONNX Runtime's intra-op threads per run (0: one per
    core); the indexer gives it what the picture pass leaves free.
    """

    def __init__(
        self,
        device: str = "auto",
        threads: int = 0,
        *,
        min_confidence: float = MIN_CONFIDENCE,
        first_look_side: int = FIRST_LOOK_SIDE,
        detect_side: int = DETECT_SIDE,
        max_pixels: int = MAX_PIXELS,
        time_budget_s: float = TIME_BUDGET_S,
        turn_lines: bool = True,
        first_look_thresholds: tuple[float, float] = FIRST_LOOK_THRESHOLDS,
        cache_dir: Path | None = None,
    ) -> None:
        if threads < 0:
            raise ValueError("threads must be 0 (one per core) or more")
        if first_look_side < 0 or detect_side < 32 or max_pixels < MIN_TEXT_SIDE**2 or time_budget_s < 0:
            raise ValueError("first_look_side ≥ 0, detect_side ≥ 32, max_pixels ≥ 64 and time_budget_s ≥ 0")
        self.min_confidence = min_confidence
        self.first_look_side = first_look_side
        self.detect_side = detect_side
        self.max_pixels = max_pixels
        self.time_budget_s = time_budget_s
        self.turn_lines = turn_lines
        self.first_look_thresholds = first_look_thresholds
        self.version = VERSION
        self._deadlines = threading.local()
        self.cache_dir = cache_dir  # MODEL_CACHE_DIR: where ONNX Runtime keeps its own files
        self._load(device, threads)

    # --- loading ---------------------------------------------------------------------------------

    def _load(self, device: str, threads: int) -> None:
        try:
            ort = import_onnxruntime(self.cache_dir)  # before rapidocr, which imports it too
            from rapidocr.ch_ppocr_cls import TextClassifier
            from rapidocr.ch_ppocr_det import TextDetector
            from rapidocr.ch_ppocr_rec import TextRecInput, TextRecognizer
            from rapidocr.inference_engine.base import FileInfo, InferSession
            from rapidocr.main import DEFAULT_CFG_PATH
            from rapidocr.utils.parse_parameters import ParseParams
            from rapidocr.utils.process_img import get_rotate_crop_image
        except ImportError as exc:
            raise ModelLoadError(f"the text reader needs rapidocr and onnxruntime ({exc}): pip install -r requirements.txt") from None
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # its own handler: an INFO line per model
        providers = _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ONNX Runtime's warnings are not the user's business
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads sleep between runs instead of spinning: spinning doubled the CPU time a reading takes
        # (bench/ocr_quality.py) and takes it from the picture pass sharing the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = False  # RapidOCR's choice: input sizes vary from picture to picture
        cfg = ParseParams.load(DEFAULT_CFG_PATH)
        models = Path(DEFAULT_CFG_PATH).parent / "models"

        def section(name: str) -> Any:
            part = _Config(ParseParams.to_container(cfg[name]))  # ParseParams is RapidOCR's OmegaConf
            info = FileInfo(
                engine_type=part.engine_type, ocr_version=part.ocr_version, task_type=part.task_type,
                lang_type=part.lang_type, model_type=part.model_type,
            )
            path = models / Path(InferSession.get_model_url(info)["model_dir"]).name
            if not path.is_file():
                raise ModelLoadError(f"RapidOCR's {name} model is missing ({path}): reinstall rapidocr==3.10.0")
            try:
                session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - a broken model file or provider: one clear line
                raise ModelLoadError(f"RapidOCR's {name} model could not be loaded from {path}: {_first_line(exc)}") from None
            part["model_root_dir"] = models
            part["font_path"] = None  # the recogniser keeps it for drawing results, which is never done here
            part["session"] = session  # RapidOCR uses a session it is given (its PR #451) instead of making one
            return part

        det_cfg = section("Det")
        det_cfg.update(limit_type="max", limit_side_len=1 << 20)  # sizes are chosen here, not by RapidOCR
        self._detect = TextDetector(det_cfg)
        self._first_look = TextDetector(det_cfg)
        for detector, (pixel, box) in ((self._first_look, self.first_look_thresholds), (self._detect, DETECT_THRESHOLDS)):
            detector.postprocess_op.thresh, detector.postprocess_op.box_thresh = pixel, box
            # float32 mean and std: RapidOCR's float64 lists made normalising the input take twice as long
            detector.mean = np.asarray(det_cfg["mean"], np.float32)
            detector.std = np.asarray(det_cfg["std"], np.float32)
        self._classify = TextClassifier(section("Cls"))
        self._recognise = TextRecognizer(section("Rec"))
        for stage in (self._detect, self._first_look, self._classify, self._recognise):
            stage.session = _DeadlineSession(stage.session.session, ort.RunOptions, self._deadlines)
        self._rec_input = TextRecInput
        self._crop = get_rotate_crop_image
        self.device = self._detect.session.session.get_providers()[0]
        # Each session's first run sets itself up (not interruptible, ~0.5 s): do it now, not in a reading.
        blank = np.full((64, 256, 3), 255, np.uint8)
        self._detect(blank)
        self._recognise(TextRecInput(img=[self._classify([blank[:48]]).img_list[0]]))
        log.info("text reader on %s, %s intra-op threads", self.device, threads or "all")

    # --- reading ---------------------------------------------------------------------------------

    def read(self, image: Image.Image) -> TextReading:
        """The text in `image` (see the module's docstring for the steps and budgets)."""
        started = time.perf_counter()
        size = image.size
        if min(size) < MIN_TEXT_SIDE:
            return TextReading((), size, skipped=f"{size[0]}×{size[1]} px is too small to hold text")
        self._deadlines.at = started + self.time_budget_s if self.time_budget_s else math.inf
        progress = _Progress()
        lines: list[TextLine] = []
        try:
            self._read(_rgb(image), progress, lines)
            stopped = None
        except _OutOfTime:
            stopped = (
                f"stopped after {self.time_budget_s:g} s (the time budget), {progress.recognised} of "
                f"{progress.detected} lines recognised" if progress.detected else
                f"stopped after {self.time_budget_s:g} s (the time budget) while looking for text"
            )
        except TextReadError:
            raise
        except MemoryError:
            raise TextReadError("not enough memory to read the text in this picture") from None
        except Exception as exc:  # noqa: BLE001 - whatever the models choke on fails this picture alone
            raise TextReadError(f"the text reader failed on this picture ({type(exc).__name__}: {_first_line(exc)})") from None
        finally:
            self._deadlines.at = math.inf
        stats = ReadingStats(
            first_look=progress.first_look, first_look_boxes=progress.first_look_boxes, detected=progress.detected,
            recognised=progress.recognised, turned=progress.turned, detect_size=progress.detect_size,
            seconds=time.perf_counter() - started,
        )
        return TextReading(tuple(lines), size, stats, stopped=stopped)

    def _read(self, image: Image.Image, progress: _Progress, lines: list[TextLine]) -> None:
        width, height = image.size
        detect_scale = _detect_scale(image.size, self.detect_side)
        look_scale = min(1.0, self.first_look_side / min(width, height)) if self.first_look_side else 0.0
        if look_scale and look_scale**2 * 2 < detect_scale**2:  # worth a look first: under half the pixels
            progress.first_look = True
            looked = self._boxes(self._first_look, image, look_scale)
            progress.first_look_boxes = int(np.sum(_thickness(looked) <= FIRST_LOOK_MAX_THICKNESS * look_scale * min(width, height)))
            if not progress.first_look_boxes:
                return
        boxes = self._boxes(self._detect, image, detect_scale)
        progress.detect_size = _scaled_size(image.size, detect_scale)
        progress.detected = len(boxes)
        if not len(boxes):
            return
        source_scale = min(1.0, math.sqrt(self.max_pixels / (width * height)))  # crops come from this copy
        source = _bgr(_resized(image, source_scale))
        self._recognise_lines(source, boxes, source_scale / detect_scale, 1 / detect_scale, (width, height), progress, lines)

    def _check_deadline(self) -> None:
        if time.perf_counter() >= getattr(self._deadlines, "at", math.inf):
            raise _OutOfTime

    def _boxes(self, detector: Any, image: Image.Image, scale: float) -> np.ndarray:
        """The detector's boxes (N×4×2, float32) on `image` scaled by `scale`, in that scaled image's pixels."""
        self._check_deadline()
        scaled = _bgr(_resized(image, scale))
        height, width = scaled.shape[:2]
        if height < PAD_TO or width < PAD_TO:  # padded at the bottom and right: box coordinates stay put
            fill = scaled.reshape(-1, 3).mean(axis=0).astype(np.uint8)
            padded = np.empty((max(height, PAD_TO), max(width, PAD_TO), 3), np.uint8)
            padded[:] = fill
            padded[:height, :width] = scaled
            scaled = padded
        found = detector(scaled)
        if found.boxes is None or not len(found.boxes):
            return np.empty((0, 4, 2), np.float32)
        return np.asarray(found.boxes, dtype=np.float32)

    def _recognise_lines(
        self, source: np.ndarray, boxes: np.ndarray, to_source: float, to_picture: float,
        size: tuple[int, int], progress: _Progress, lines: list[TextLine],
    ) -> None:
        """Crop each box from `source`, recognise the crops a chunk at a time, keep the lines worth keeping."""
        self._check_deadline()
        crops: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (crop, box in picture pixels, turned a quarter)
        for box in boxes:
            crop = self._crop(source, (box * to_source).astype(np.float32))  # turns a tall crop a quarter
            crops.append((crop, box * to_picture, _tall(box)))
        order = sorted(range(len(crops)), key=lambda i: crops[i][0].shape[1] / max(crops[i][0].shape[0], 1))
        results: dict[int, TextLine] = {}
        try:
            for start in range(0, len(order), RECOGNISE_CHUNK):
                chunk = order[start : start + RECOGNISE_CHUNK]
                upright = [crops[i][0] for i in chunk]
                turned: list[int] = []  # positions in `chunk` the classifier turned upside down
                images = upright
                if self.turn_lines:
                    classified = self._classify(upright)
                    turned = [k for k, (label, score) in enumerate(classified.cls_res)
                              if "180" in label and score > self._classify.cls_thresh]
                    # A turned line is also read as it was, and the more confident reading kept: the
                    # classifier turns short words ("To") it cannot tell apart (bench/ocr_quality.py).
                    images = classified.img_list + [upright[k] for k in turned]
                recognised = self._recognise(self._rec_input(img=images))
                texts, scores = list(recognised.txts), [float(s) for s in recognised.scores]
                halves = [False] * len(chunk)
                for extra, k in enumerate(turned, start=len(chunk)):
                    halves[k] = scores[k] >= scores[extra]
                    if not halves[k]:
                        texts[k], scores[k] = texts[extra], scores[extra]
                progress.recognised += len(chunk)
                for i, half, text, score in zip(chunk, halves, texts, scores):
                    progress.turned += bool(half or crops[i][2])
                    line = _line(text, score, crops[i][1], size)
                    if line is not None and line.confidence >= self.min_confidence:
                        results[i] = line
        finally:  # lines recognised before the deadline are kept, in the detector's order
            lines.extend(results[i] for i in sorted(results))


class _Config(dict[str, Any]):
    """A config section as RapidOCR's stages read it: items, also as attributes (as Immich's OcrOptions)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class _Progress:
    first_look: bool = False
    first_look_boxes: int = 0
    detected: int = 0
    recognised: int = 0
    turned: int = 0
    detect_size: tuple[int, int] = (0, 0)


def _providers(device: str, available: Sequence[str]) -> list[Any]:
    """ONNX Runtime's providers for `device` (see `TextReader`); `ModelLoadError` for CUDA it lacks."""
    device = device.strip().lower()
    cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not cuda:
            raise ModelLoadError(
                f"text reading on {device} needs onnxruntime-gpu (this onnxruntime offers {', '.join(available)}); "
                "use auto or cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": int(device[5:] or 0)}), "CPUExecutionProvider"]
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")


def _rgb(image: Image.Image) -> Image.Image:
    """`image` as loaded RGB pixels; `TextReadError` if its pixels cannot be read."""
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise TextReadError(f"the picture's pixels could not be read ({_first_line(exc)})") from None


def _detect_scale(size: tuple[int, int], side: int) -> float:
    """The detection's scale: shorter side at most `side`, area at most DETECT_MAX_PIXELS; never enlarged
    (on the bench, enlarging small pictures up to twice found no more words, 8-px text included)."""
    width, height = size
    return min(1.0, side / min(width, height), math.sqrt(DETECT_MAX_PIXELS / (width * height)))


def _scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _resized(image: Image.Image, scale: float) -> Image.Image:
    """`image` scaled by `scale` (itself when the scale is about 1); box-reduced first when shrinking a lot."""
    size = _scaled_size(image.size, scale)
    if abs(size[0] - image.width) <= 1 and abs(size[1] - image.height) <= 1:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0 if scale < 0.5 else None)


def _bgr(image: Image.Image) -> np.ndarray:
    """RGB pixels as the BGR array RapidOCR's OpenCV code expects."""
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def _thickness(boxes: np.ndarray) -> np.ndarray:
    """The shorter side of each of N boxes (N×4×2)."""
    sides = np.stack([np.linalg.norm(boxes[:, 0] - boxes[:, 1], axis=1), np.linalg.norm(boxes[:, 0] - boxes[:, 3], axis=1)])
    return sides.min(axis=0) if len(boxes) else np.empty(0)


def _tall(box: np.ndarray) -> bool:
    """Whether a detected box is at least TALL times as high as wide (its text runs up or down)."""
    high = max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))
    wide = max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))
    return bool(high >= TALL * wide)


def _line(text: str, confidence: float, box: np.ndarray, size: tuple[int, int]) -> TextLine | None:
    """A line worth keeping (some letter or digit in it), its box rounded and kept inside the picture."""
    text = " ".join(text.split())
    if not any(c.isalnum() for c in text):
        return None
    width, height = size
    corners = tuple((min(max(round(float(x)), 0), width), min(max(round(float(y)), 0), height)) for x, y in box)
    return TextLine(text, corners, confidence)  # type: ignore[arg-type]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
