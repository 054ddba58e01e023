"""Text queries on the CPU: ways to run CLIP's text tower faster, their speed and how far they move vectors.

    .venv/bin/python bench/text_query.py                   # ~5-10 min on 2 busy cores
    .venv/bin/python bench/text_query.py --rounds 3 --points 10000
    PYTHONPATH=/path/to/onnxruntime+onnx .venv/bin/python bench/text_query.py   # adds ONNX Runtime rows

Models: the random-weight clip-ViT-B-32 look-alike (bench/common.py: speed is the real model's,
vectors mean nothing) and the trained tiny CLIP (tests/fixtures/tiny-clip). Variants, each one query
(one text) at a time on one intra-op thread, as `Encoder.encode_texts` runs queries:

* plain      — `Encoder.encode_texts` with EMBEDDER_TEXT_SPEEDUP=off (sentence-transformers' encode);
* onnx       — the same with `auto` and a model cache, the product's default (embedder.models.text_onnx:
               the text tower exported once, checked, run by ONNX Runtime on one thread);
* fast       — the same with `torch` (embedder.models.text_fast.FastClipText: true length, fused qkv, oneDNN-packed);
* fast-nopack— FastClipText with plain F.linear (how much is packing, how much is less overhead);
* int8       — torch.ao.quantization.quantize_dynamic on every nn.Linear of the text tower (deprecated API);
* bf16       — the text tower cast to bfloat16;
* ort-fp32 / ort-int8 — the text tower exported to ONNX, run by ONNX Runtime (int8: its dynamic
  quantisation, per channel), only where `onnxruntime` and `onnx` import.

Every variant gets the same 40 new texts per round, rounds interleaved; cosine to `plain` over those
texts. Then end to end: `Searcher.search(Query.text(...))` on an Edge store of --points clustered
vectors (100k by default: issue #29's goal is p50 <= 25 ms there), plain vs fast vs onnx encoders,
interleaved, every text new (no cache hit). Writes bench/results/text_query.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TINY = common.ROOT / "tests" / "fixtures" / "tiny-clip"
WORDS = "dog cat beach mountain birthday city snow sunset car family forest red blue old small".split()


def texts(round_no: int, n: int = 40) -> list[str]:
    """New texts every round (3-12 words), so nothing is served from a cache."""
    rng = np.random.default_rng(100 + round_no)
    return [" ".join(rng.choice(WORDS, int(rng.integers(3, 13)))) + f" {round_no}-{i}" for i in range(n)]


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "min_ms": round(float(a.min()), 2), "n": len(a)}


class Tower:
    """The transformers text tower + projection as one module (for int8, bf16, ONNX)."""

    def __new__(cls, clip):
        import torch

        class _Tower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.text_model, self.proj = clip.text_model, clip.text_projection

            def forward(self, ids, mask):
                return self.proj(self.text_model(input_ids=ids, attention_mask=mask).pooler_output)

        return _Tower().eval()


def variants(model_dir: Path, with_ort: bool, extras: bool = True) -> tuple[dict, dict]:
    """name → (text → unnormalised or normalised vector), and build costs."""
    import torch

    from embedder.models.base import Encoder
    from embedder.models.sentence_transformers import SentenceTransformersEncoder
    from embedder.models.text_fast import FastClipText, clip_model_of

    plain = SentenceTransformersEncoder(str(model_dir), "cpu", text_speedup="off")
    fast = SentenceTransformersEncoder(str(model_dir), "cpu", text_speedup="torch")
    onnx = SentenceTransformersEncoder(str(model_dir), "cpu", text_speedup="auto", text_cache=onnx_cache())
    st = plain.model
    clip = clip_model_of(st)
    tokens = lambda text: st.preprocess([text])  # noqa: E731
    costs: dict = {}
    rss0 = common.rss_mb()
    started = time.perf_counter()
    fast.encode_texts(["warm up"])  # builds FastClipText (packs the weights)
    costs["fast_build_s"] = round(time.perf_counter() - started, 2)
    costs["fast_extra_rss_mb"] = round(common.rss_mb() - rss0, 1)
    costs["fast_packed"] = bool(fast._fast_text and fast._fast_text.packed)
    costs.update(onnx_costs(onnx))
    nopack = FastClipText(clip, pack=False)
    tower = Tower(clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tower), {torch.nn.Linear}, dtype=torch.qint8)
        costs["int8_build_s"] = round(time.perf_counter() - started, 2)
    bf16 = copy.deepcopy(tower).to(torch.bfloat16)

    def run(module):
        def call(text):
            t = tokens(text)
            with torch.inference_mode():
                return module(t["input_ids"], t["attention_mask"]).float()[0].numpy()
        return call

    out = {
        "plain": lambda text: plain.encode_texts([text])[0],
        "onnx": lambda text: onnx.encode_texts([text])[0],
        "fast": lambda text: fast.encode_texts([text])[0],
        "fast-nopack": run(lambda ids, mask: nopack(ids[0])[None]),
        "int8": run(int8),
        "bf16": run(bf16),
    }
    if not extras:
        return {name: out[name] for name in ("plain", "onnx", "fast")}, costs
    if with_ort:
        out.update(ort_variants(tower, tokens, costs))
    return out, costs


def onnx_cache() -> Path:
    """An empty model cache: every run exports again, so the export's cost is measured."""
    return Path(tempfile.mkdtemp(prefix="text-onnx-cache-"))


def onnx_costs(encoder) -> dict:
    """What the product's ONNX text path costs: export (with its check), file, the session's RSS."""
    from embedder.models import text_onnx

    rss0 = common.rss_mb()
    started = time.perf_counter()
    tower = encoder.text_tower()  # exports, checks against the library, opens the session
    costs = {"onnx_export_and_check_s": round(time.perf_counter() - started, 2),
             "onnx_extra_rss_mb": round(common.rss_mb() - rss0, 1), "onnx_adopted": tower is not None}
    if tower is not None:
        manifest = text_onnx.read_manifest(tower.folder) or {}
        costs.update(onnx_export_s=manifest.get("export_s"), onnx_min_cosine_in_check=manifest.get("min_cosine"),
                     onnx_file_mb=round((tower.folder / text_onnx.MODEL_FILE).stat().st_size / 2**20, 1))
        rss0 = common.rss_mb()
        started = time.perf_counter()
        text_onnx.OnnxClipText(tower.folder, manifest)  # what a later process pays: open only
        costs["onnx_open_s"] = round(time.perf_counter() - started, 2)
        costs["onnx_open_rss_mb"] = round(common.rss_mb() - rss0, 1)
    return costs


def ort_variants(tower, tokens, costs: dict) -> dict:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(tempfile.mkdtemp(prefix="text-onnx-"))
    fp32, int8 = folder / "tower.onnx", folder / "tower-int8.onnx"
    probe = tokens("a photo of a dog")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tower, (probe["input_ids"], probe["attention_mask"]), str(fp32), input_names=["ids", "mask"],
            output_names=["out"], dynamic_axes={"ids": {0: "b", 1: "n"}, "mask": {0: "b", 1: "n"}},
            opset_version=17, dynamo=False,
        )
    costs["ort_export_s"] = round(time.perf_counter() - started, 1)
    costs["ort_fp32_file_mb"] = round(fp32.stat().st_size / 2**20, 1)
    started = time.perf_counter()
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    costs["ort_int8_quantise_s"] = round(time.perf_counter() - started, 1)
    costs["ort_int8_file_mb"] = round(int8.stat().st_size / 2**20, 1)
    costs["onnxruntime"] = ort.__version__

    def session(path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def call(text):
            t = tokens(text)
            return s.run(None, {"ids": t["input_ids"].numpy(), "mask": t["attention_mask"].numpy()})[0][0]
        return call

    return {"ort-fp32": session(fp32), "ort-int8": session(int8)}


def cosines(calls: dict, sample: list[str]) -> dict:
    ref = np.stack([calls["plain"](t) for t in sample])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    out = {}
    for name, call in calls.items():
        got = np.stack([call(t) for t in sample]).astype(np.float32)
        got /= np.linalg.norm(got, axis=1, keepdims=True)
        cos = (got * ref).sum(1)
        out[name] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6), "meets_0.999": bool(cos.min() >= 0.999)}
    return out


def speed(calls: dict, rounds: int) -> tuple[dict, list]:
    import torch

    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}  # this thread's CPU time: what other load disturbs least
    loads = []
    with torch.inference_mode():
        for r in range(rounds):
            loads.append(os.getloadavg())
            batch = texts(r)
            for name, call in calls.items():
                call(batch[0] + " warm")
                for text in batch:
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    call(text)
                    times[name].append((time.perf_counter() - started) * 1000)
                    cpu[name].append((time.thread_time() - started_cpu) * 1000)
    loads.append(os.getloadavg())
    return {name: {**percentiles(ms), "cpu": percentiles(cpu[name])} for name, ms in times.items()}, loads


def end_to_end(points: int, rounds: int) -> dict:
    """Searcher.search(Query.text) on an Edge store: plain vs fast text path, interleaved."""
    import search_latency as sl  # the bench's clustered vectors and payloads

    from embedder.models.sentence_transformers import SentenceTransformersEncoder
    from embedder.query.terms import Query
    from embedder.query.searcher import Searcher
    from embedder.store import Point

    folder = Path(tempfile.mkdtemp(prefix="text-e2e-"))
    store = sl.open_store("edge", folder)
    vecs = sl.vectors(points)
    rng = np.random.default_rng(sl.SEED + 1)
    for start in range(0, points, sl.BATCH):
        store.upsert([Point(sl.point_id(i), vecs[i], sl.payload(i, rng)) for i in range(start, min(points, start + sl.BATCH))])
    cache = onnx_cache()
    searchers = {
        mode: Searcher(SentenceTransformersEncoder(str(common.MODEL_DIR), "cpu", text_speedup=mode, text_cache=cache), store)
        for mode in ("off", "torch", "auto")
    }
    times: dict[str, list[float]] = {mode: [] for mode in searchers}
    loads = []
    for r in range(rounds):
        loads.append(os.getloadavg())
        for mode, searcher in searchers.items():
            searcher.search(Query.text(f"warm up {mode} {r}"), 10)
            for text in texts(1000 + r, 30):
                started = time.perf_counter()
                assert len(searcher.search(Query.text(f"{mode} {text}", template="a photo of {}"), 10)) == 10
                times[mode].append((time.perf_counter() - started) * 1000)
    store.close()
    return {"points": points, "engine": "edge (the default policy)", "loadavg": loads,
            "plain (EMBEDDER_TEXT_SPEEDUP=off)": percentiles(times["off"]),
            "fast (EMBEDDER_TEXT_SPEEDUP=torch)": percentiles(times["torch"]),
            "onnx (auto, the default)": percentiles(times["auto"]),
            "goal_p50_ms": 25, "goal_met": percentiles(times["auto"])["p50_ms"] <= 25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--points", type=int, default=100_000, help="store size for the end-to-end query (0: skip)")
    parser.add_argument("--out", default="text_query", help="bench/results/OUT.json")
    parser.add_argument("--no-extras", action="store_true", help="only plain, onnx and fast (no int8, bf16, ort-*)")
    args = parser.parse_args()
    import torch

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        with_ort = True
    except ImportError:
        with_ort = False
    common.build_model()
    result: dict = {"machine": common.machine(), "load_before": common.load(), "loadavg_before": os.getloadavg(),
                    "torch_threads_for_queries": 1, "rounds": args.rounds, "onnxruntime_measured": with_ort}
    torch.set_num_threads(1)
    for name, folder in (("tiny-clip (trained)", TINY), ("clip-ViT-B-32 (random weights)", common.MODEL_DIR)):
        calls, costs = variants(folder, with_ort, not args.no_extras)
        entry = {"cosine_to_plain": cosines(calls, texts(999)), "build": costs}
        if "random" in name:
            entry["speed_one_query"], entry["loadavg"] = speed(calls, args.rounds)
        result[name] = entry
        print(name, entry, flush=True)
        del calls
    if args.points:
        torch.set_num_threads(os.cpu_count() or 2)  # as the app runs: queries take 1 thread themselves
        result["end_to_end"] = end_to_end(args.points, args.rounds)
        print(result["end_to_end"], flush=True)
    result["loadavg_after"] = os.getloadavg()
    print("wrote", common.write_result(args.out, result))


if __name__ == "__main__":
    main()
