"""Indexing throughput: the seed project's loop against the project's Indexer, same images, same model.

    .venv/bin/python bench/index_throughput.py            # 12 MP and 640×480 photos, ~10 min on 2 cores
    .venv/bin/python bench/index_throughput.py --quick    # fewer images
    .venv/bin/python bench/index_throughput.py --stages   # only ours and the model alone, stage by stage

* baseline — what the seed project did: for each file `Image.open`, `model.encode(image)` one at a
  time, collect, upsert every 1000 points into qdrant-client local mode.
* ours — `Engine.open(settings)` and `Indexer.index(folder)`: hashing, JPEG draft decoding and the
  model's preprocessing in a thread pool ahead of the model, batched forward passes, the embedded
  store (Qdrant Edge), a flushed upsert per batch.

Each run is a fresh subprocess (its own peak RSS), on the random-weight ViT-B/32 look-alike from
bench/common.py. Also measured: how far JPEG draft decoding moves the model's input (the pixel
tensor after the model's own preprocessing) from a full-size decode, and peak RSS of `ours` at two
N (streaming: it must not grow with N). Every `ours` run also says where its time went: start-up
(`Engine.open`), then per stage hash, decode, thumbnails and the model's preprocessing (in the decode
threads), and on the model's thread the hash phase, waits for decoded images, the forward pass, the
tag vocabulary (a store's first run encodes its labels' text vectors), tags, store reads and writes,
and the store's end of run. Writes bench/results/index_throughput.json (`--stages`: index_stages.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

IMAGE_SETS = {"12mp": (4000, 3000), "vga": (640, 480)}


# --- the runs (each in its own process) -----------------------------------------------------------


def run_baseline(paths: list[Path], store_dir: Path) -> dict:
    import numpy as np
    from PIL import Image
    from qdrant_client import QdrantClient, models
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(common.MODEL_DIR), device="cpu", local_files_only=True)
    client = QdrantClient(path=str(store_dir))
    client.create_collection("images", vectors_config=models.VectorParams(size=512, distance=models.Distance.COSINE))
    common.reset_peak_rss()
    started = time.perf_counter()
    points: list[models.PointStruct] = []
    for i, path in enumerate(paths):
        image = Image.open(path)
        vector = model.encode(image, show_progress_bar=False)
        points.append(models.PointStruct(id=i, vector=np.asarray(vector).tolist(), payload={"path": str(path)}))
        if len(points) >= 1000:
            client.upsert("images", points)
            points = []
    if points:
        client.upsert("images", points)
    seconds = time.perf_counter() - started
    count = client.count("images").count
    client.close()
    return {"images": count, "seconds": seconds, "images_per_s": count / seconds, "peak_rss_mb": common.hwm_mb()}


# Where an `ours` run spends its time. Pool stages run in the decode threads (their seconds add up
# over threads, so they can exceed the run's); the others run on the model's thread, one after another.
# "tag vocabulary" is the tag labels' text vectors, encoded on a store's first run (then cached beside it),
# inside the first call of "tags"; "store reads" happen inside "sorting out known images" and writes.
POOL_STAGES = ("hash", "decode", "thumbnails", "model preprocessing")
MODEL_THREAD_STAGES = ("hash phase (the model waits)", "sorting out known images", "waiting for decoded images",
                       "model forward", "tag vocabulary (once a store)", "tags", "store reads", "store writes",
                       "store: end of run")


def instrument(engine, events: list[dict]) -> None:
    """Time every stage of the engine's indexing into `events` (common.timed), without changing it."""
    from embedder.indexing import indexer as indexing

    common.timed(indexing, "hash_file", events, "hash")
    common.timed(indexing, "decode", events, "decode")
    if engine.indexer.thumbnails is not None:
        common.timed(engine.indexer.thumbnails, "add_from", events, "thumbnails")
    common.timed(engine.encoder, "prepare_image", events, "model preprocessing")
    common.timed(engine.encoder, "encode_images", events, "model forward")
    if engine.indexer.tagger is not None:
        common.timed(engine.indexer.tagger, "tag", events, "tags")
        common.timed(engine.indexer.tagger, "label_vectors", events, "tag vocabulary (once a store)")
    common.timed(engine.store, "retrieve", events, "store reads")
    common.timed(engine.store, "upsert", events, "store writes")
    common.timed(engine.store, "fill_days", events, "store: end of run")
    common.timed(engine.store, "optimize", events, "store: end of run")
    common.timed(indexing.Indexer, "_hash_all", events, "hash phase (the model waits)")
    common.timed(indexing.Indexer, "_sort_known", events, "sorting out known images")
    ahead = indexing.Indexer._decode_ahead

    def decode_ahead(self, *args, **kwargs):  # a generator: time each wait for the next decoded image
        items = ahead(self, *args, **kwargs)
        while True:
            started = time.perf_counter()
            item = next(items, None)
            events.append({"what": "waiting for decoded images", "s": time.perf_counter() - started,
                           "at": time.perf_counter()})
            if item is None:
                return
            yield item

    indexing.Indexer._decode_ahead = decode_ahead


def stage_summary(events: list[dict], images: int, seconds: float) -> dict:
    """Seconds and ms per image of each stage; the share of the run the model was busy."""
    total = {name: 0.0 for name in (*POOL_STAGES, *MODEL_THREAD_STAGES)}
    vocabulary = "tag vocabulary (once a store)"
    for e in events:
        if e["what"] == vocabulary and e["s"] < 0.01:
            continue  # the vectors already in memory: not a stage
        total[e["what"]] = total.get(e["what"], 0.0) + e["s"]
    total["tags"] -= total[vocabulary]  # nested in the first call of `tag`
    model_thread = sum(total[name] for name in MODEL_THREAD_STAGES if name != "store reads")
    steady = seconds - total[vocabulary]
    return {
        "seconds": {name: round(s, 3) for name, s in total.items()},
        "ms_per_image": {name: round(1000 * s / max(images, 1), 1) for name, s in total.items()},
        "model_busy_share": total["model forward"] / seconds if seconds else None,
        "images_per_s_without_the_tag_vocabulary": images / steady if steady > 0 else None,
        "model_thread_unaccounted_s": round(seconds - model_thread, 3),  # discovery, payloads, progress
    }


def run_ours(paths: list[Path], store_dir: Path, workers: int, batch: int, torch_threads: int = 0) -> dict:
    import torch

    from embedder.config import Settings
    from embedder.engine import Engine

    folder = common.photo_folder(paths, f"ours-{os.getpid()}")
    thumbs = store_dir.with_name(store_dir.name + "-thumbnails")  # fresh: every run makes its thumbnails
    shutil.rmtree(thumbs, ignore_errors=True)
    settings = Settings(model=str(common.MODEL_DIR), device="cpu", qdrant_path=store_dir, workers=workers,
                        batch_size=batch, thumb_dir=thumbs)
    opening = time.perf_counter()
    engine = Engine.open(settings)
    start_up_s = time.perf_counter() - opening
    if torch_threads:
        torch.set_num_threads(torch_threads)
    events: list[dict] = []
    instrument(engine, events)
    common.reset_peak_rss()
    rss_before = common.rss_mb()
    started = time.perf_counter()
    report = engine.indexer.index([folder])
    seconds = time.perf_counter() - started
    count = engine.store.count()
    engine.close()
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(thumbs, ignore_errors=True)
    assert not report.failed, report.failed[:3]
    return {
        "images": count,
        "seconds": seconds,
        "images_per_s": count / seconds,
        "start_up_s": start_up_s,  # Engine.open: the model, the store, the tag vocabulary (not in `seconds`)
        "stages": stage_summary(events, count, seconds),
        "peak_rss_mb": common.hwm_mb(),
        "rss_before_run_mb": rss_before,
        "workers": engine.indexer.workers,
        "batch_size": engine.encoder.batch_size,
        "torch_threads": torch.get_num_threads(),
    }


def run_model_only(batch: int, n: int) -> dict:
    """The forward pass alone on ready pixel tensors: the ceiling for any pipeline on this machine."""
    import torch

    from embedder.models.base import Encoder, PreparedImage
    from embedder.models.sentence_transformers import SentenceTransformersEncoder

    encoder = SentenceTransformersEncoder(str(common.MODEL_DIR), device="cpu", batch_size=batch)
    prepared = [PreparedImage(torch.randn(3, 224, 224)) for _ in range(batch)]
    encoder.encode_images(prepared)  # warm-up
    started = time.perf_counter()
    done = 0
    while done < n:
        encoder.encode_images(prepared)
        done += batch
    seconds = time.perf_counter() - started
    return {"images": done, "seconds": seconds, "images_per_s": done / seconds, "batch_size": batch}


def draft_fidelity(paths: list[Path]) -> dict:
    """Full-size decode vs draft decode, after the model's own preprocessing (normalised units)."""
    import numpy as np

    from embedder.models.base import Encoder
    from embedder.media.images import decode

    encoder = SentenceTransformersEncoder(str(common.MODEL_DIR), device="cpu")
    size = encoder.image_size
    means, maxes, cosines, draft_s, full_s = [], [], [], [], []
    for path in paths:
        t0 = time.perf_counter()
        full = encoder.prepare_image(decode(path, 10**9).image)
        t1 = time.perf_counter()
        draft = encoder.prepare_image(decode(path, 10**9, min_side=size).image)
        t2 = time.perf_counter()
        full_s.append(t1 - t0)
        draft_s.append(t2 - t1)
        diff = (full.pixels - draft.pixels).abs()
        means.append(float(diff.mean()))
        maxes.append(float(diff.max()))
        a, b = encoder.encode_images([full, draft])
        cosines.append(float(np.dot(a, b)))
    value_range = 2.0 / 0.26862954  # normalised pixels span about (1 - 0) / std
    return {
        "images": len(paths),
        "input_size": size,
        "mean_abs_diff": float(np.mean(means)),
        "max_abs_diff": float(np.max(maxes)),
        "mean_abs_diff_in_8bit_levels": float(np.mean(means)) * 0.27 * 255,
        "value_range": value_range,
        "embedding_cosine_min": float(np.min(cosines)),
        "embedding_cosine_mean": float(np.mean(cosines)),
        "decode_and_prepare_ms_full": 1000 * float(np.mean(full_s)),
        "decode_and_prepare_ms_draft": 1000 * float(np.mean(draft_s)),
    }


def child(args: argparse.Namespace) -> None:
    store_dir = Path(args.store)
    if args.run == "model":
        result = run_model_only(args.batch or 32, args.n)
    else:
        width, height = IMAGE_SETS[args.images]
        paths = common.make_photos(args.n, width, height)
        if args.run == "baseline":
            result = run_baseline(paths, store_dir)
        elif args.run == "ours":
            result = run_ours(paths, store_dir, args.workers, args.batch, args.torch_threads)
        else:
            result = draft_fidelity(paths)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(run: str, images: str = "12mp", n: int = 0, workers: int = 0, batch: int = 0, torch_threads: int = 0) -> dict:
    store = common.CACHE / "runs" / f"store-{run}-{images}-{n}-{workers}-{batch}"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", run, "--images", images, "--n", str(n), "--store", str(store),
           "--workers", str(workers), "--batch", str(batch), "--torch-threads", str(torch_threads)]
    load = common.load()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(store, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{run} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load_before"] = load
    if "images_per_s" not in result:
        return result
    print(f"  {run:9s} {images:5s} n={n:<4d} {result['images_per_s']:7.2f} images/s"
          + (f"  peak RSS {result['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in result else "")
          + f"   [{load.split('load average:')[-1].strip()}]", flush=True)
    if "stages" in result:
        per_image = result["stages"]["ms_per_image"]
        print(f"            start-up {result['start_up_s']:.1f} s; ms an image: "
              + ", ".join(f"{name} {ms:.0f}" for name, ms in per_image.items() if ms >= 0.5)
              + f"; model busy {100 * result['stages']['model_busy_share']:.0f}% of the run; without the tag "
              f"vocabulary {result['stages']['images_per_s_without_the_tag_vocabulary']:.2f} images/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", dest="run", help=argparse.SUPPRESS)
    parser.add_argument("--images", default="12mp", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--torch-threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sweep", action="store_true", help="only compare decode workers × torch threads")
    parser.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    parser.add_argument("--stages", action="store_true",
                        help="only `ours` and the model alone, with where each stage spends its time")
    args = parser.parse_args()
    if args.run:
        child(args)
        return

    n12, nvga, n_big = (24, 64, 48) if args.quick else (48, 96, 360)
    rounds = 1 if args.quick else 3
    common.CACHE.mkdir(parents=True, exist_ok=True)
    common.build_model()
    common.make_photos(n12 if args.stages or args.sweep else max(n12, n_big), *IMAGE_SETS["12mp"])
    common.make_photos(nvga, *IMAGE_SETS["vga"])
    print(f"machine: {common.machine()}\nload: {common.load()}", flush=True)
    if args.stages:
        stages = {"machine": common.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "model_only": spawn("model", n=64, batch=32)}
        for images, n in (("12mp", n12), ("vga", nvga)):
            stages[images] = spawn("ours", images, n)
        path = common.write_result("index_stages" + ("-quick" if args.quick else ""), stages)
        print(f"wrote {path.relative_to(common.ROOT)}")
        return
    if args.sweep:
        sweep = {}
        for rep in range(2):
            for workers, threads in ((2, 2), (1, 2), (2, 1), (1, 1)):
                r = spawn("ours", "12mp", n12, workers=workers, torch_threads=threads)
                sweep.setdefault(f"workers={workers} torch_threads={threads}", []).append(r["images_per_s"])
        print(json.dumps(sweep, indent=1))
        common.write_result("index_threads_sweep", {"machine": common.machine(), "n": n12, "images_per_s": sweep})
        return

    results: dict = {"machine": common.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds, "runs": {}}
    runs = results["runs"]
    print("draft decoding vs full decode, after the model's preprocessing:")
    runs["draft_fidelity"] = spawn("fidelity", "12mp", 16)
    print("  " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in runs["draft_fidelity"].items()}))
    # Other people's jobs share these cores: every variant runs once per round, interleaved, and
    # the tables use the best round of each (the least disturbed), with the median beside it.
    cores = os.cpu_count() or 2
    variants = {
        "model_only": lambda images, n: spawn("model", n=64, batch=32) if images == "12mp" else None,
        "baseline": lambda images, n: spawn("baseline", images, n),
        "ours": lambda images, n: spawn("ours", images, n),
        "ours_workers_per_core": lambda images, n: spawn("ours", images, n, workers=cores),
    }
    samples: dict = {}
    for round_no in range(rounds):
        print(f"round {round_no + 1}/{rounds}:", flush=True)
        for images, n in (("12mp", n12), ("vga", nvga)):
            for name, run in variants.items():
                r = run(images, n)
                if r is not None:
                    samples.setdefault(images, {}).setdefault(name, []).append(r)
    for images, by_variant in samples.items():
        summary = {}
        for name, rs in by_variant.items():
            rates = sorted(r["images_per_s"] for r in rs)
            summary[name] = {
                "best_images_per_s": rates[-1],
                "median_images_per_s": rates[len(rates) // 2],
                "all_images_per_s": [r["images_per_s"] for r in rs],
                "peak_rss_mb": max((r.get("peak_rss_mb", 0) for r in rs), default=0),
                "n": rs[0]["images"],
                "loads": [r["load_before"].split("load average:")[-1].strip() for r in rs],
            }
        summary["ratio_best"] = summary["ours"]["best_images_per_s"] / summary["baseline"]["best_images_per_s"]
        summary["ratio_median"] = summary["ours"]["median_images_per_s"] / summary["baseline"]["median_images_per_s"]
        runs[images] = summary
        print(f"  {images}: ours/baseline best {summary['ratio_best']:.2f}×, median {summary['ratio_median']:.2f}×")
    print("streaming: peak RSS of ours at two N (12 MP):")
    runs["rss_small_n"] = spawn("ours", "12mp", n12)
    runs["rss_large_n"] = spawn("ours", "12mp", n_big)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path = common.write_result("index_throughput" + ("-quick" if args.quick else ""), results)

    print("\n| images | n | baseline images/s | ours images/s | ratio (best) | ratio (median) | baseline peak RSS | ours peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for images in ("12mp", "vga"):
        r = runs[images]
        print(f"| {images} | {r['ours']['n']} | {r['baseline']['best_images_per_s']:.2f} | {r['ours']['best_images_per_s']:.2f} | "
              f"{r['ratio_best']:.2f}× | {r['ratio_median']:.2f}× | {r['baseline']['peak_rss_mb']:.0f} MB | {r['ours']['peak_rss_mb']:.0f} MB |")
    print(f"\nours peak RSS: n={runs['rss_small_n']['images']}: {runs['rss_small_n']['peak_rss_mb']:.0f} MB, "
          f"n={runs['rss_large_n']['images']}: {runs['rss_large_n']['peak_rss_mb']:.0f} MB")
    print(f"wrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
