"""A results page of 64 thumbnails of 12 MP photos, in a real browser: cold and warm.

    .venv/bin/python bench/page_render.py            # ~5 min on 2 busy cores
    .venv/bin/python bench/page_render.py --photos 64

Indexes --photos 4000×3000 JPEGs (bench/common.py's photo-like files, ~3 MB each) with the
random-weight clip-ViT-B-32 look-alike (bench/common.py: its 224 px input is what the indexer's
decode, and so its thumbnails, are made for; results are in no meaningful order), starts the real app
(`streamlit run main_app.py`), sets "Results per page" to 64 in headless Chromium (Debian's
/usr/bin/chromium through Playwright) and times from pressing Enter on a query to the moment all 64
`<img>`s of the grid are decoded by the browser (`complete && naturalWidth > 0`). Scenarios:

* no-disk-cache — THUMB_CACHE_MB=0, as before this change: the first view decodes every original
  (Streamlit's memory cache only); then the same app again (warm, memory cache);
* disk-cache — the default: the indexer wrote thumbnails from the decode it made for the model;
  a fresh app process (nothing in memory) reads them from THUMB_DIR; then warm.

Also the indexing cost of writing thumbnails: the same run with and without, and the thumbnail
alone per image (`ThumbnailCache.add_from` on the indexer's draft-decoded image).
Writes bench/results/page_render.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ALL_DECODED = """n => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return imgs.length >= n && imgs.slice(0, n).every(i => i.complete && i.naturalWidth > 0); }"""


def env_for(work: Path, thumb_mb: int) -> dict[str, str]:
    return {**os.environ, "EMBEDDER_MODEL": str(common.build_model()), "EMBEDDER_DEVICE": "cpu", "QDRANT_PATH": str(work / "qdrant"),
            "UPLOAD_DIR": str(work / "uploads"), "THUMB_DIR": str(work / "thumbnails"), "THUMB_CACHE_MB": str(thumb_mb),
            "WATCH": "false", "EMBEDDER_ENV_FILE": str(common.ROOT / "tests" / "fixtures" / "empty.env"),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def index(folder: Path, work: Path, thumb_mb: int) -> dict:
    """Index in a child process (the store's folder lock goes with it); its time and thumbnails."""
    code = ("import sys, time; from embedder.config import Settings; from embedder.engine import Engine\n"
            "e = Engine.open(Settings.from_env()); t = time.perf_counter(); r = e.indexer.index([sys.argv[1]])\n"
            "print('RESULT', len(r.added), time.perf_counter() - t); e.close()")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env_for(work, thumb_mb), cwd=common.ROOT,
                          capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    added, seconds = line.split()[1:]
    thumbs = list((work / "thumbnails").rglob("*.jpg"))
    return {"added": int(added), "index_s": round(float(seconds), 2), "thumbnails_written": len(thumbs),
            "thumbnails_mb": round(sum(p.stat().st_size for p in thumbs) / 2**20, 2)}


def thumbnail_cost(paths: list[Path]) -> dict:
    """ms per image: the indexer's draft decode, and a thumbnail from its result."""
    from embedder.media.images import decode
    from embedder.media.thumbnails import ThumbnailCache

    cache = ThumbnailCache(Path(tempfile.mkdtemp(prefix="thumbs-")), 100)
    decode_ms, thumb_ms = [], []
    for i, path in enumerate(paths):
        t = time.perf_counter()
        image = decode(path, 100_000_000, 224).image
        decode_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        cache.add_from(f"{i + 1:064x}", image)
        thumb_ms.append((time.perf_counter() - t) * 1000)
    shutil.rmtree(cache.folder, ignore_errors=True)
    med = lambda xs: round(sorted(xs)[len(xs) // 2], 1)  # noqa: E731
    return {"images": len(paths), "draft_decode_ms_median": med(decode_ms), "thumbnail_ms_median": med(thumb_ms)}


def start_app(work: Path, thumb_mb: int) -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(common.ROOT / "tests"))
    from faultkit import free_port

    port = free_port()
    log = open(work / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "main_app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.headless", "true",
         "--server.fileWatcherType", "none"],
        cwd=common.ROOT, env=env_for(work, thumb_mb), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit("streamlit did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def page_times(url: str, n: int, queries: list[str]) -> list[float]:
    """Seconds from Enter to n decoded thumbnails, for each query in turn (the first is cold)."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1080})
        page.set_default_timeout(180_000)
        page.goto(url + "/")
        page.wait_for_selector(IDLE)
        slider = page.get_by_role("slider", name="Results per page")
        slider.focus()
        slider.press("End")  # 64
        page.wait_for_selector(IDLE)
        for text in queries:
            box = page.get_by_label("What are you looking for?")
            box.fill(text)
            started = time.perf_counter()
            box.press("Enter")
            page.wait_for_function(ALL_DECODED, arg=n, polling=20)
            out.append(round(time.perf_counter() - started, 3))
            page.wait_for_selector(IDLE)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--warm", type=int, default=3, help="warm queries after the cold one")
    args = parser.parse_args()
    paths = common.make_photos(args.photos)
    folder = common.photo_folder(paths, "page-render")
    result: dict = {"machine": common.machine(), "load_before": common.load(), "photos": len(paths),
                    "photo": "4000x3000 JPEG q90", "thumbnails_on_page": args.photos, "goal_warm_s": 1.0}
    result["thumbnail_cost_at_indexing"] = thumbnail_cost(paths[:16])
    queries = ["a photo", "colourful shapes", "a blurry picture", "circles and polygons", "noise"][: args.warm + 1]
    for name, thumb_mb in (("no-disk-cache (as before)", 0), ("disk-cache (default)", 500)):
        work = Path(tempfile.mkdtemp(prefix="page-render-"))
        try:
            entry = {"index": index(folder, work, thumb_mb), "loadavg": [os.getloadavg()]}
            proc, url = start_app(work, thumb_mb)
            try:
                times = page_times(url, args.photos, queries)
            finally:
                stop(proc)
            entry["loadavg"].append(os.getloadavg())
            entry["first_view_s"] = times[0]
            entry["warm_s"] = times[1:]
            entry["warm_median_s"] = sorted(times[1:])[len(times[1:]) // 2]
            entry["warm_goal_met"] = entry["warm_median_s"] <= 1.0
            result[name] = entry
            print(name, entry, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = common.load()
    print("wrote", common.write_result("page_render", result))


if __name__ == "__main__":
    main()
