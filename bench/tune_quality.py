"""Tuning quality on the tiny CLIP: does it learn concepts it never saw without forgetting what it knew?

    .venv/bin/python bench/tune_quality.py                       # ~5-10 min on 2 busy cores
    .venv/bin/python bench/tune_quality.py --per-class 12 --epochs 3   # a quick look
    .venv/bin/python bench/tune_quality.py --epochs 20 --name tune_quality-e20   # the run that meets the goal

The tiny CLIP (tests/fixtures/tiny-clip) knows coloured circles, squares, triangles, stars and crosses.
It is tuned, through `embedder tune` itself, on shapes it never saw (synthetic.NEW_SHAPES: hearts,
crescents, rings, arrows in its colours, each with three paraphrased captions in one group), keeping a
library of its own kind of pictures (synthetic classes, seed 11, indexed as the library: the default
`--keep`) and its own vocabulary (TAGS_FILE = the synthetic captions: its everyday words). Measured:

* new concepts: text→image mAP on the test split (pictures never trained on), base → tuned, from the
  model card the run writes (both models loaded by the product's loader, indexed into scratch stores);
* what it knew: `embedder eval` of the synthetic classes on held-out pictures (seed 99, as in
  README's table), base → tuned, text→image mAP.

Goal (issue #28): new-concept mAP rises by at least 0.30 while known-class mAP falls by at most 0.05.
Writes bench/results/tune_quality.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TINY = common.ROOT / "tests" / "fixtures" / "tiny-clip"
GOAL_RISE = 0.30
GOAL_FALL = 0.05


def run_cli(*argv: str) -> tuple[int, str, str]:
    from embedder import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def text_map(document: str, model: str) -> float:
    rows = json.loads(document)["evaluations"]
    return next(r["overall"]["mAP"] for r in rows if r["model"] == model and r["mode"] == "text→image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=30, help="pictures of each new shape (4 shapes)")
    parser.add_argument("--library-per-class", type=int, default=4, help="library pictures of each known class (30)")
    parser.add_argument("--known-per-class", type=int, default=5, help="held-out pictures of each known class")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train", default="all", choices=("last", "lora", "all"))
    parser.add_argument("--lr", default="1e-3")
    parser.add_argument("--keep-weight", default="3.0")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--name", default="tune_quality", help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()

    from embedder.evaluation import synthetic

    with tempfile.TemporaryDirectory(prefix="bench-tune-quality-") as tmp:
        root = Path(tmp)
        labels = synthetic.write_new_concepts(root / "new", args.per_class, seed=1)
        synthetic.write_dataset(root / "library", args.library_per_class, seed=11)
        synthetic.write_dataset(root / "known", args.known_per_class, seed=99)
        vocabulary = root / "vocabulary.txt"
        vocabulary.write_text("\n".join(synthetic.caption(*n.split()) for n in synthetic.class_names()) + "\n")
        (root / "empty.env").write_text("")
        os.environ.update({
            "EMBEDDER_ENV_FILE": str(root / "empty.env"), "QDRANT_PATH": str(root / "store"),
            "EMBEDDER_MODEL": str(TINY), "EMBEDDER_DEVICE": "cpu", "TAGS_FILE": str(vocabulary),
        })
        code, _, err = run_cli("index", str(root / "library"))
        assert code == 0, err
        model = root / "tuned"
        started = time.perf_counter()
        code, out, err = run_cli(
            "tune", str(labels), "--out", str(model), "--epochs", str(args.epochs), "--batch-size",
            str(args.batch_size), "--train", args.train, "--lr", args.lr, "--keep-weight", args.keep_weight,
            "--seed", args.seed, "--json",
        )
        assert code == 0, err
        seconds = time.perf_counter() - started
        card = json.loads(out)
        code, known, err = run_cli("eval", str(root / "known"), "--k", "1,5,10", "--model", str(TINY),
                                   "--model", str(model), "--json")
        assert code == 0, err
        known_base, known_tuned = text_map(known, TINY.name), text_map(known, model.name)

    new_base = card["test"]["base"]["text→image"]["mAP"]
    new_tuned = card["test"]["tuned"]["text→image"]["mAP"]
    result = {
        "machine": common.machine(),
        "load": common.load(),
        "settings": {k: getattr(args, k) for k in ("per_class", "library_per_class", "known_per_class", "epochs",
                                                     "batch_size", "train", "lr", "keep_weight", "seed")},
        "tune_seconds": round(seconds, 1),
        "split": card["split"],
        "best_epoch": card["best_epoch"],
        "alpha": card["alpha"],
        "alphas": card["alphas"],
        "history": card["history"],
        "new_concepts_test_map": {"base": new_base, "tuned": new_tuned, "rise": new_tuned - new_base},
        "known_classes_map": {"base": known_base, "tuned": known_tuned, "fall": known_base - known_tuned},
        "kept_pictures": card["kept"],
        "goal": {"rise_at_least": GOAL_RISE, "fall_at_most": GOAL_FALL,
                 "met": new_tuned - new_base >= GOAL_RISE and known_base - known_tuned <= GOAL_FALL},
    }
    path = common.write_result(args.name, result)
    print(f"new concepts (test split): mAP {new_base:.3f} -> {new_tuned:.3f} (rise {new_tuned - new_base:+.3f}, goal >= {GOAL_RISE})")
    print(f"known classes (held out):  mAP {known_base:.3f} -> {known_tuned:.3f} (fall {known_base - known_tuned:+.3f}, goal <= {GOAL_FALL})")
    print(f"epoch {card['best_epoch']}, alpha {card['alpha']}, {seconds:.0f} s; goal met: {result['goal']['met']}; {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
