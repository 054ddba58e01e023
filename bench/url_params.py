"""How long the Search page takes to answer a hand-made address (the URL is input too).

    .venv/bin/python bench/url_params.py             # ~2 min on 2 busy cores
    .venv/bin/python bench/url_params.py --repeats 1 --model tests/fixtures/tiny-clip

Indexes a few synthetic pictures with the random-weight clip-ViT-B-32 look-alike (bench/common.py:
CLIP's real text tower, 77 tokens), then runs the real Search page (streamlit.testing AppTest, one
fresh session each time) on each address below and times the run, median of --repeats: a plain
query (the baseline), one term of 100,000 characters, 1,000 terms, and every parameter bad at
once. The page reads at most 20 terms of at most 1,000 characters (embedder_ui/pages/search_url.py),
so the huge addresses should cost about what the plain query costs.
Writes bench/results/url_params.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ADDRESSES = {
    "plain query": {"q": ["1:a red circle"]},
    "one term of 100,000 characters": {"q": ["a red circle " * 7_693]},
    "1,000 terms": {"q": [f"1:word {i}" for i in range(1_000)]},
    "every parameter bad": {
        "q": ["inf:y", "nan:x", ""], "filter-min-width": ["1e400"], "filter-dates": ["2024-13-45"],
        "filter-types": ["pgn"], "filter-folder": ["/" + "x" * 5_000], "filter-tags": [f"t{i}" for i in range(50)],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a sentence-transformers folder (default: the ViT-B-32 look-alike)")
    args = parser.parse_args()
    model = Path(args.model) if args.model else common.build_model()
    work = Path(tempfile.mkdtemp(prefix="bench-url-"))
    os.environ.update(
        EMBEDDER_MODEL=str(model), EMBEDDER_DEVICE="cpu", QDRANT_PATH=str(work / "qdrant"),
        UPLOAD_DIR=str(work / "uploads"), THUMB_DIR=str(work / "thumbnails"), WATCH="false", HF_HUB_OFFLINE="1",
        EMBEDDER_ENV_FILE=str(common.ROOT / "tests" / "fixtures" / "empty.env"),
    )
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    from embedder.config import Settings
    from embedder.engine import Engine

    (work / "pictures").mkdir()
    for i, colour in enumerate(["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]):
        Image.new("RGB", (320, 240), colour).save(work / "pictures" / f"{i}-{colour}.png")
    engine = Engine.open(Settings.from_env())
    engine.indexer.index([work / "pictures"])
    engine.close()

    main_app = str(common.ROOT / "main_app.py")
    AppTest.from_file(main_app, default_timeout=600).run()  # the first run loads the model: not timed
    rows = {}
    for name, params in ADDRESSES.items():
        times = []
        for _ in range(args.repeats):
            at = AppTest.from_file(main_app, default_timeout=600)
            for key, values in params.items():
                at.query_params[key] = values
            started = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - started)
            assert not at.exception, [e.message for e in at.exception]
        rows[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                      "warnings": len(at.warning)}
        print(f"{name:34} {rows[name]['median_s']:6.2f} s  ({len(at.warning)} warnings)", flush=True)
    path = common.write_result("url_params", {
        "what": "Search page run time for hand-made addresses (AppTest, fresh session each run, median)",
        "model": str(model), "repeats": args.repeats, "machine": common.machine(), "load": common.load(),
        "results": rows,
    })
    print(path)


if __name__ == "__main__":
    main()
