"""Shared bench helpers: an offline ViT-B/32-shaped CLIP, photo-like JPEGs, machine facts, RSS.

Everything heavy is built once and cached under bench/cache/ (git-ignored):

* bench/cache/clip-vit-b32-random/ — a sentence-transformers CLIP with the exact architecture of
  clip-ViT-B-32 (transformers' CLIPConfig defaults = openai/clip-vit-base-patch32: vision 768 wide,
  12 layers, patch 32, 224 px; text 512 wide, 12 layers, 77 positions; projection 512) and random
  weights. Speed and memory are those of the real model; the vectors mean nothing.
* bench/cache/photos-<W>x<H>-q<Q>/ — JPEGs made of smooth gradients, texture and shapes, so they
  compress (and decode) like photographs, not like flat synthetic images.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_DIR = CACHE / "clip-vit-b32-random"
MODEL_SEED = 32

# Words that get whole-word tokens, so typical queries tokenise to about as many tokens as with
# CLIP's real 49k vocabulary; anything else falls back to byte tokens (still valid, just longer).
COMMON_WORDS = (
    "a an the of in on at with and or to from by for is are photo picture image my our "
    "dog dogs cat cats car cars man woman child children people person family friends "
    "red blue green yellow black white orange purple brown pink grey gray "
    "beach sea ocean lake river mountain mountains forest tree trees snow sky sunset sunrise "
    "night city street building house room kitchen food cake birthday party wedding "
    "park garden flower flowers bird birds horse boat train plane bike road bridge "
    "old new small big large little happy playing running sitting standing walking "
    "winter summer autumn spring day morning evening holiday trip vacation "
).split()


# --- the model -----------------------------------------------------------------------------------


def write_clip_tokenizer_files(folder: Path) -> None:
    """vocab.json + merges.txt of a CLIP byte-level BPE: bytes, bytes + ``</w>``, whole-word merges
    for COMMON_WORDS (grown from the left), then BOS and EOS last, as in CLIP's own vocabulary."""
    table = _fixture_tokenizer().bytes_to_unicode()
    byte_chars = list(table.values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    known = set(vocab)
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in COMMON_WORDS:
        symbols = [table[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        current = symbols[0]
        for nxt in symbols[1:]:
            pair = (current, nxt)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            current += nxt
            if current not in known:
                known.add(current)
                vocab.append(current)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def build_model(out: Path = MODEL_DIR) -> Path:
    """The random-weight clip-ViT-B-32 look-alike, in sentence-transformers format (cached)."""
    if (out / "modules.json").is_file():
        return out
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(MODEL_SEED)
    config = CLIPConfig()  # the defaults are openai/clip-vit-base-patch32's architecture
    v, t = config.vision_config, config.text_config
    assert (v.hidden_size, v.num_hidden_layers, v.patch_size, v.image_size) == (768, 12, 32, 224), v
    assert (t.hidden_size, t.num_hidden_layers, t.max_position_embeddings) == (512, 12, 77), t
    assert config.projection_dim == 512
    with tempfile.TemporaryDirectory(dir=CACHE if CACHE.is_dir() else None) as tmp:
        hf_dir = Path(tmp) / "hf"
        write_clip_tokenizer_files(hf_dir)
        tokenizer = CLIPTokenizer.from_pretrained(str(hf_dir), model_max_length=77)
        # transformers 5 quietly builds a 2-token tokenizer when the files are missing: refuse that.
        assert len(tokenizer) > 512, f"tokenizer has only {len(tokenizer)} tokens"
        ids = tokenizer("a photo of a dog on the beach")["input_ids"]
        assert len(ids) <= 12 and tokenizer.unk_token_id not in ids[1:-1], tokenizer.convert_ids_to_tokens(ids)
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(hf_dir))
        CLIPModel(config).eval().save_pretrained(str(hf_dir))
        model = SentenceTransformer(modules=[Transformer(str(hf_dir))], device="cpu")
        tmp_out = out.with_name(out.name + ".tmp")
        model.save(str(tmp_out))
        os.replace(tmp_out, out)
    return out


# --- photo-like JPEGs ----------------------------------------------------------------------------


def _photo(args: tuple[int, int, int, int, str]) -> str:
    seed, width, height, quality, path = args
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    # Smooth colour field: a coarse random grid, upscaled (like sky, walls, out-of-focus areas).
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    canvas = coarse.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    # Shapes with hard edges (objects), in a few sizes.
    for _ in range(int(rng.integers(12, 30))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            pts = [(x + int(rng.integers(-r, r)), y + int(rng.integers(-r, r))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=colour)
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.2))  # lens softness
    # Texture and sensor noise: fine detail that makes a 12 MP JPEG a few MB, as a photo is.
    pixels = np.asarray(canvas, dtype=np.int16)
    texture = rng.normal(0, 7, (height // 2, width // 2, 1)).astype(np.int16)
    texture = np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)[:height, :width]
    noise = rng.integers(-4, 5, (height, width, 3), dtype=np.int16)
    pixels = np.clip(pixels + texture + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=quality)
    return path


def make_photos(n: int, width: int = 4000, height: int = 3000, quality: int = 90, workers: int | None = None) -> list[Path]:
    """n distinct photo-like JPEGs (cached; more are added when a larger n is asked for)."""
    folder = CACHE / f"photos-{width}x{height}-q{quality}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    todo = [(1000 + i, width, height, quality, str(p)) for i, p in enumerate(paths) if not p.is_file()]
    if todo:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers or os.cpu_count() or 2) as pool:
            for _ in pool.map(_photo, todo, chunksize=4):
                pass
        print(f"  made {len(todo)} {width}×{height} JPEGs in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def photo_folder(paths: list[Path], name: str) -> Path:
    """A folder holding exactly `paths` (as symlinks), so an indexer walks only those."""
    folder = CACHE / "runs" / name
    if folder.exists():
        for child in folder.iterdir():
            child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        (folder / p.name).symlink_to(p)
    return folder


# --- facts ---------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    import torch

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load() -> str:
    """The load average (other engineers' tests share these cores)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(owner: object, name: str, into: list[dict], label: str) -> None:
    """Wrap `owner.name` to append {"what": label, "s": seconds, "at": end} to `into` on every call
    (from any thread: list.append is atomic)."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            into.append({"what": label, "s": time.perf_counter() - started, "at": time.perf_counter()})

    setattr(owner, name, wrapper)


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux ≥ 4.0), so phases can be told apart."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """VmHWM: peak RSS since the last reset_peak_rss()."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path



def _fixture_tokenizer():
    """The tiny CLIP's build script, whose CLIP byte map the bench's tokenizer shares."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "train_tiny_clip.py"
    spec = importlib.util.spec_from_file_location("train_tiny_clip", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    print(build_model())
