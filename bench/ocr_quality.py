"""Text in pictures: the reader's word recall on the labelled text set, and what reading costs.

    .venv/bin/python bench/ocr_quality.py                      # 20 pictures per kind, 2 threads (~5 min quiet)
    .venv/bin/python bench/ocr_quality.py --per-kind 4 --big-photos 2 --out ocr_quality-small
    .venv/bin/python bench/ocr_quality.py --sweep              # tune the settings on the "tune" split

The set is bench/text_set.py's (cards, phone screenshots, receipts and signs on photo-like
backgrounds, photos without text), drawn once into bench/cache/. Each picture is decoded as the text
pass will decode it (`embedder.media.images.decode` with `min_side=DECODE_SIDE`: JPEGs at a reduced
scale) and read by one `TextReader` on `--threads` intra-op threads.

Reported, on the held-out ``test`` split (``tune`` is what `--sweep` chooses settings on):

* word recall: of the words drawn on each picture (`embedder.words.word_spans` of its lines), the share
  `embedder.words.words` of the reading holds, by kind and overall;
* junk: lines read on photos without text; how often the first look ended a photo's reading;
* throughput: pictures a second, decode + read and read alone, for photos without text (the set's and
  `--big-photos` 12 MP camera-like JPEGs from bench/common.py) and for pictures with text;
* the first look's saving: the same photos read with the first look and without it (`first_look_side=0`);
* the time budget: how far past it a reading of a long screenshot ends, at budgets of 0.05-2 s, and the lines it kept;
* RSS: the process before the reader loads, after, and at its peak.

Writes bench/results/<--out>.json (default ocr_quality.json) with the machine and its load.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import text_set  # noqa: E402

from embedder.media.images import decode  # noqa: E402
from embedder.models.ocr import DECODE_SIDE, MIN_CONFIDENCE, TextReader, TextReading  # noqa: E402

MAX_PIXELS = 100_000_000  # MAX_IMAGE_PIXELS' default
GOALS = {"word_recall": 0.95, "photos_per_s": 4.0, "text_per_s": 1.5}
SWEEP = [(736, 0), (736, 320), (736, 448), (736, 512), (640, 448), (960, 448)]  # (detect_side, first_look_side)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def cpu_s() -> float:
    """CPU seconds this process has used, ONNX Runtime's threads included: steadier than the wall clock
    when others share the cores (a reading's CPU time hardly changes with load, its wall time does)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_read(reader: TextReader, path: Path, record: text_set.Record) -> dict:
    """Decode `path` as the text pass will and read it: the reading, and what each step took."""
    c0, t0 = cpu_s(), time.perf_counter()
    image = decode(path, MAX_PIXELS, min_side=DECODE_SIDE).image
    c1, t1 = cpu_s(), time.perf_counter()
    reading = reader.read(image)
    c2, t2 = cpu_s(), time.perf_counter()
    return {"record": record, "decode_s": t1 - t0, "read_s": t2 - t1, "decode_cpu_s": c1 - c0, "read_cpu_s": c2 - c1,
            "reading": reading}


def read_all(reader: TextReader, folder: Path, records: list[text_set.Record]) -> list[dict]:
    """Decode and read every record's picture; what each took and what was read (all confidences)."""
    return [timed_read(reader, folder / record.path, record) for record in records]


def kept_text(reading: TextReading, threshold: float) -> str:
    return "\n".join(line.text for line in reading.lines if line.confidence >= threshold)


def recall(results: list[dict], threshold: float) -> dict:
    """Word recall overall and by kind, at `threshold`, over the pictures that carry text."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        record = r["record"]
        if not record.words:
            continue
        hit, wanted = text_set.word_recall(record.words, kept_text(r["reading"], threshold))
        for key in ("all", record.kind):
            found[key][0] += hit
            found[key][1] += wanted
    return {k: round(h / w, 4) for k, (h, w) in sorted(found.items()) if w}


def misses(results: list[dict], threshold: float, limit: int = 25) -> list[dict]:
    """Words not found, with the picture and what was read instead (to see what goes wrong)."""
    out = []
    for r in results:
        record = r["record"]
        have = set(text_set.words(kept_text(r["reading"], threshold)))
        lost = [w for w in record.words if w not in have]
        if lost:
            out.append({"path": record.path, "lost": lost, "read": kept_text(r["reading"], 0.0).splitlines()})
    return out[:limit]


def speed(results: list[dict]) -> dict:
    if not results:
        return {}
    read = [r["read_s"] for r in results]
    both = [r["decode_s"] + r["read_s"] for r in results]
    return {
        "n": len(results),
        "per_s_decode_and_read": round(len(both) / sum(both), 2),
        "per_s_read": round(len(read) / sum(read), 2),
        "read_ms_p50": round(1000 * statistics.median(read), 1),
        "read_ms_max": round(1000 * max(read), 1),
        "decode_ms_p50": round(1000 * statistics.median(r["decode_s"] for r in results), 1),
        "cpu_s_decode_and_read_mean": round(statistics.mean(r["decode_cpu_s"] + r["read_cpu_s"] for r in results), 3),
        "cpu_s_read_mean": round(statistics.mean(r["read_cpu_s"] for r in results), 3),
    }


def junk(results: list[dict], threshold: float) -> dict:
    photos = [r for r in results if not r["record"].words]
    if not photos:
        return {}
    lines = [line for r in photos for line in r["reading"].lines if line.confidence >= threshold]
    return {
        "photos": len(photos),
        "first_look_ended_reading": sum(r["reading"].stats.recognition_skipped for r in photos),
        "photos_with_lines": sum(any(line.confidence >= threshold for line in r["reading"].lines) for r in photos),
        "lines": len(lines),
        "examples": [line.text for line in lines[:10]],
    }


def big_photos(reader: TextReader, n: int) -> list[dict]:
    """12 MP camera-like JPEGs without text (bench/common.py's), decoded and read as the text pass will."""
    return [timed_read(reader, path, text_set.Record(str(path), "photo-12mp", "test", [], [])) for path in common.make_photos(n)]


def budget_overshoot(reader: TextReader, budgets: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0, 2.0)) -> list[dict]:
    """How far past its time budget a reading ends (ONNX Runtime runs stop at the deadline; the numpy work
    between them does not), on a long screenshot dense with text."""
    rows = [(f"Row {i}", f"Name-Guest {i} Pa55word! {i * 37}") for i in range(40)]
    picture = text_set.screenshot("Long list", rows, size=40, screen=(1080, 5400))
    out = []
    kept = reader.time_budget_s
    try:
        for budget in budgets:
            reader.time_budget_s = budget
            t0 = time.perf_counter()
            reading = reader.read(picture)
            took = time.perf_counter() - t0
            out.append({"budget_s": budget, "took_s": round(took, 3), "over_ms": round(1000 * (took - budget), 1),
                        "lines_kept": len(reading.lines), "stopped": reading.stopped})
    finally:
        reader.time_budget_s = kept
    return out


def sweep(folder: Path, records: list[text_set.Record], threads: int) -> list[dict]:
    """Recall at each confidence threshold and seconds a picture, for each setting, on the tune split."""
    tune = [r for r in records if r.split == "tune"]
    rows = []
    for detect_side, first_look_side in SWEEP:
        reader = TextReader("cpu", threads, min_confidence=0.0, detect_side=detect_side, first_look_side=first_look_side)
        reader.read(text_set.card(["warm up"]))
        results = read_all(reader, folder, tune)
        text = [r for r in results if r["record"].words]
        photos = [r for r in results if not r["record"].words]
        row = {
            "detect_side": detect_side, "first_look_side": first_look_side,
            "recall": {str(t): recall(results, t)["all"] for t in THRESHOLDS},
            "junk_lines": {str(t): junk(results, t).get("lines") for t in THRESHOLDS},
            "text": speed(text),
            "photos": speed(photos),
            "photos_ended_at_first_look": sum(r["reading"].stats.recognition_skipped for r in photos),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=20, help="pictures of each kind in the set")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (the indexer's 2 cores)")
    parser.add_argument("--big-photos", type=int, default=10, help="12 MP JPEGs without text to read as well")
    parser.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE)
    parser.add_argument("--sweep", action="store_true", help="tune detect_side × first_look_side on the tune split")
    parser.add_argument("--out", default="ocr_quality")
    args = parser.parse_args()

    folder = common.CACHE / f"text-set-s{args.seed}-n{args.per_kind}"
    t0 = time.perf_counter()
    records = text_set.write_set(folder, args.per_kind, args.seed)
    print(f"set: {len(records)} pictures in {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    load_before = common.load()
    if args.sweep:
        rows = sweep(folder, records, args.threads)
        data = {"sweep": rows, "split": "tune", "per_kind": args.per_kind, "threads": args.threads,
                "load_before": load_before, "load_after": common.load(), "machine": common.machine()}
        print(common.write_result(args.out if args.out != "ocr_quality" else "ocr_quality-sweep", data))
        return 0

    rss_before = common.rss_mb()
    t0 = time.perf_counter()
    reader = TextReader("cpu", args.threads, min_confidence=0.0)
    load_s = time.perf_counter() - t0
    rss_loaded = common.rss_mb()
    reader.read(text_set.card(["warm up", "Name-Guest 12.50"]))  # the first runs plan ONNX Runtime's memory
    results = read_all(reader, folder, records)
    big = big_photos(reader, args.big_photos) if args.big_photos else []
    no_look = TextReader("cpu", args.threads, min_confidence=0.0, first_look_side=0)
    no_look.read(text_set.card(["warm up"]))
    photo_records = [r for r in records if r.kind == "photo"]
    photos_no_look = read_all(no_look, folder, photo_records)
    big_no_look = big_photos(no_look, args.big_photos) if args.big_photos else []
    with_words = [r for r in records if r.words]  # every kind, not the first kind's only
    text_records = with_words[:: max(1, len(with_words) // max(4, len(photo_records)))]
    text_no_look = read_all(no_look, folder, text_records)

    overshoot = budget_overshoot(reader)

    test = [r for r in results if r["record"].split == "test"]
    tune = [r for r in results if r["record"].split == "tune"]
    with_text = [r for r in results if r["record"].words]
    photos = [r for r in results if not r["record"].words]
    by_kind = {kind: speed([r for r in results if r["record"].kind == kind]) for kind in text_set.KINDS}
    first_look_paths = {r.path for r in text_records}
    data = {
        "settings": {
            "threads": args.threads, "min_confidence": args.min_confidence, "decode_side": DECODE_SIDE,
            "detect_side": reader.detect_side, "first_look_side": reader.first_look_side, "max_pixels": reader.max_pixels,
            "time_budget_s": reader.time_budget_s, "device": reader.device,
        },
        "set": {"per_kind": args.per_kind, "seed": args.seed, "pictures": len(records),
                "test": len(test), "tune": len(tune), "folder": str(folder)},
        "word_recall_test": recall(test, args.min_confidence),
        "word_recall_tune": recall(tune, args.min_confidence),
        "word_recall_test_by_threshold": {str(t): recall(test, t).get("all") for t in THRESHOLDS},
        "junk_on_photos": junk(results, args.min_confidence),
        "junk_on_12mp_photos": junk(big, args.min_confidence),
        "speed": {
            "photos_without_text": speed(photos),
            "photos_12mp_without_text": speed(big),
            "pictures_with_text": speed(with_text),
            "by_kind": by_kind,
        },
        "first_look": {
            "photos_with": speed([r for r in results if r["record"].kind == "photo"]),
            "photos_without": speed(photos_no_look),
            "photos_12mp_with": speed(big),
            "photos_12mp_without": speed(big_no_look),
            "text_with": speed([r for r in results if r["record"].path in first_look_paths]),
            "text_without": speed(text_no_look),
        },
        "stopped_by_time_budget": sum(not r["reading"].complete for r in results),
        "time_budget_overshoot": overshoot,
        "turned_lines": sum(r["reading"].stats.turned for r in with_text),
        "misses_test": misses(test, args.min_confidence),
        "rss_mb": {"before_reader": round(rss_before, 1), "reader_loaded": round(rss_loaded, 1),
                   "after": round(common.rss_mb(), 1), "peak": round(common.peak_rss_mb(), 1)},
        "reader_load_s": round(load_s, 2),
        "load_before": load_before,
        "load_after": common.load(),
    }
    recall_all = data["word_recall_test"].get("all", 0.0)
    photos_per_s = data["speed"]["photos_without_text"].get("per_s_decode_and_read", 0.0)
    text_per_s = data["speed"]["pictures_with_text"].get("per_s_decode_and_read", 0.0)
    data["goals"] = {
        "word_recall": {"goal": GOALS["word_recall"], "value": recall_all, "met": recall_all >= GOALS["word_recall"]},
        "photos_per_s": {"goal": GOALS["photos_per_s"], "value": photos_per_s, "met": photos_per_s >= GOALS["photos_per_s"]},
        "text_per_s": {"goal": GOALS["text_per_s"], "value": text_per_s, "met": text_per_s >= GOALS["text_per_s"]},
    }
    quiet = all(float(x.split("load average:")[1].split(",")[0]) < 2 for x in (load_before, data["load_after"]) if "load average:" in x)
    data["provisional"] = not quiet  # speed goals are judged at load < 2 (issue 27)
    data["machine"] = common.machine()  # last: it imports torch, which the reader's RSS must not include
    for key in ("word_recall_test", "word_recall_test_by_threshold", "junk_on_photos", "speed", "first_look",
                "time_budget_overshoot", "rss_mb", "goals"):
        print(f"{key}: {data[key]}")
    print(common.write_result(args.out, data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
