"""Tuning cost of a ViT-B/32 CLIP: seconds per epoch and peak memory for each choice of what is trained.

    .venv/bin/python bench/tune_cost.py                              # 128 pictures, ~15-30 min on 2 cores
    .venv/bin/python bench/tune_cost.py --pictures 16 --choices last  # a quick look
    .venv/bin/python bench/tune_cost.py --device cuda                # on a GPU (all weights, autocast)

The model is bench/common.py's random-weight clip-ViT-B-32 look-alike (transformers' CLIPConfig
defaults, sentence-transformers format): speed and memory are the real model's, the vectors mean
nothing, so quality is not measured here (bench/tune_quality.py does that on the tiny CLIP).
Each choice (`last`: the last 2 blocks of each tower and the projections; `lora`: rank-8 adapters on
every attention projection; `all`) runs in a process of its own through `embedder.evaluation.tune.tune`,
2 epochs over --pictures synthetic 224 px pictures with captions (batch --batch-size), keeping --pictures / 2
unlabelled ones and the built-in tag vocabulary, as `embedder tune` does. Measured: the second
epoch's seconds (its steps and the validation after it, the first epoch pays one-off costs), the
mean seconds of its steps (a step: the batch, as many kept pictures and 64 vocabulary prompts,
forward and backward), seconds per train picture, and the peak RSS of the whole process (base model, the model being tuned, the
pictures). Then, in one process, a training step of
each choice in turn for --rounds rounds on the same inputs: the fair comparison of their speed on a
machine whose load changes. Writes bench/results/tune_cost.json (or tune_cost-cuda.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402

CHOICES = ("last", "lora", "all")


def one(choice: str, pictures: int, batch: int, device: str) -> dict:
    """Tune once with `choice` in this process; its figures."""
    from embedder.config import Settings
    from embedder.engine import Engine
    from embedder.evaluation import synthetic
    from embedder.evaluation.datasets import load_dataset
    from embedder.evaluation.splits import dataset_split
    from embedder.evaluation.tune import TuneOptions, tune

    model = common.build_model()
    with tempfile.TemporaryDirectory(prefix="bench-tune-cost-") as tmp:
        root = Path(tmp)
        labels = synthetic.write_new_concepts(root / "data", max(3, pictures // len(synthetic.NEW_SHAPES)), seed=1)
        keep = root / "keep"
        keep.mkdir()
        for i, sample in enumerate(synthetic.generate(max(2, pictures // 2), seed=2)):
            sample.image.save(keep / f"{i:04d}.jpg", quality=90)
        settings = Settings(model=str(model), device=device, qdrant_path=root / "store", upload_dir=root / "up",
                            thumb_dir=root / "thumbs", tags=False)
        dataset = load_dataset(labels)
        split = dataset_split(dataset, 0)
        marks: list[tuple[float, object]] = []
        engine = Engine.open(settings)
        started = time.perf_counter()
        try:
            result = tune(engine, dataset, split, root / "tuned",
                          TuneOptions(epochs=2, batch_size=batch, trainable=choice, keep=keep),
                          on_progress=lambda p: marks.append((time.perf_counter(), p)))
        finally:
            engine.close()
        total = time.perf_counter() - started
    epochs = [t for t, p in marks if p.phase == "epoch"]
    steps = next(p.steps for _, p in reversed(marks) if p.phase == "training")
    second = [t for t, p in marks if p.phase == "training" and p.epoch == 2]
    step_seconds = (second[-1] - second[0]) / (len(second) - 1) if len(second) > 1 else None
    train_pictures = result.card["split"]["train"]
    return {
        "choice": choice,
        "device": result.card["settings"]["device"],
        "trained_parameters": result.card["settings"]["trained_parameters"],
        "train_pictures": train_pictures,
        "validation_pictures": result.card["split"]["validation"],
        "kept_pictures": result.card["settings"]["kept_pictures"],
        "batch_size": batch,
        "steps_per_epoch": steps,
        "seconds_per_epoch": round(epochs[1] - epochs[0], 2),
        "seconds_per_step": round(step_seconds, 2) if step_seconds else None,
        "seconds_per_train_picture": round((epochs[1] - epochs[0]) / train_pictures, 3),
        "first_epoch_seconds": round(epochs[0] - next(t for t, p in marks if p.phase == "training"), 2),
        "whole_run_seconds": round(total, 1),
        "peak_rss_mb": round(common.hwm_mb()),
    }


def interleaved(choices: list[str], batch: int, rounds: int, device: str) -> list[dict]:
    """One training step of each choice in turn, `rounds` times, in this process on the same inputs
    (the batch, as many kept pictures, 64 vocabulary prompts; forward, losses, backward, AdamW):
    a fair comparison on a machine whose load changes, which separate processes are not."""
    import torch

    from embedder.evaluation import synthetic
    from embedder.evaluation.trainable import Trainable
    from embedder.indexing.tags import TEMPLATE, load_vocabulary
    from embedder.models.sentence_transformers import SentenceTransformersEncoder as Encoder

    model = str(common.build_model())
    students = {c: Trainable(Encoder(model, device)) for c in choices}
    optimizers = {}
    for choice, student in students.items():
        student.select(choice, seed=0)
        optimizers[choice] = torch.optim.AdamW(student.trained_parameters(), lr=1e-5)
    images = [s.image for s in synthetic.generate(2 * batch, seed=5)]
    captions = [synthetic.caption(s.colour, s.shape) for s in synthetic.generate(batch, seed=5)]
    vocabulary = [TEMPLATE.format(label) for label in load_vocabulary(None)[:64]]
    times: dict[str, list[float]] = {c: [] for c in choices}
    for _ in range(rounds + 1):  # the first round warms up
        for choice, student in students.items():
            student.model.train()
            pixels = torch.stack([student.prepare(i).pixels for i in images]).to(student.device, torch.float32)
            started = time.perf_counter()
            vectors = student.image_features(pixels)
            texts = student.text_features(captions)
            words = student.text_features(vocabulary)
            loss = student.loss(vectors[:batch], texts, torch.eye(batch, dtype=torch.bool, device=student.device))
            loss = loss + (1 - (vectors[batch:] * vectors[batch:].detach()).sum(-1)).mean() + (1 - (words * words.detach()).sum(-1)).mean()
            optimizers[choice].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[choice].step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[choice].append(time.perf_counter() - started)
    return [{"choice": c, "trained_parameters": sum(p.numel() for p in students[c].trained_parameters()),
             "step_seconds": [round(t, 2) for t in times[c][1:]], "median_step_seconds": round(float(np.median(times[c][1:])), 2)}
            for c in choices]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=128, help="labelled pictures (60%% train)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--choices", default=",".join(CHOICES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved steps of each choice")
    parser.add_argument("--steps-only", action="store_true", help="only the interleaved steps, no whole runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one choice in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.pictures, args.batch_size, args.device)))
        return 0
    rows = []
    for choice in [] if args.steps_only else args.choices.split(","):
        command = [sys.executable, __file__, "--one", choice, "--pictures", str(args.pictures),
                   "--batch-size", str(args.batch_size), "--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{choice:>5}: {row['trained_parameters']:>11,} trained, {row['seconds_per_epoch']:7.1f} s/epoch, "
              f"{row['seconds_per_step'] or float('nan'):.1f} s/step "
              f"({row['seconds_per_train_picture']:.3f} s a train picture), peak RSS {row['peak_rss_mb']} MB")
    steps = interleaved(args.choices.split(","), args.batch_size, args.rounds, args.device)
    for row in steps:
        print(f"{row['choice']:>5}: interleaved steps {row['step_seconds']} s (median {row['median_step_seconds']} s)")
    name = "tune_cost" + ("-steps" if args.steps_only else "") + ("" if args.device == "cpu" else f"-{args.device.split(':')[0]}")
    path = common.write_result(name, {"machine": common.machine(), "load": common.load(), "pictures": args.pictures,
                                      "batch_size": args.batch_size, "rows": rows, "interleaved_steps": steps})
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
