"""Write the card of an ensemble bundle and score it: every member and the ensemble on one synthetic test split.

Each member is scored by its deterministic prediction on the same split (``evaluate_miou``). A member trained with
``--seed S`` scored itself on the test split of seed S; its card then gets the common split's figure as
``provenance.metrics.test`` (its own kept as ``test_seed<S>``). The ensemble is scored by the arg-max of its members'
mean softmax (T = 0). The figures go into the ensemble's ``provenance``.

Usage: python scripts/ensemble_card.py --out models/ensemble --members ../default member1 member2 [--count 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from app.defaults import IGNORE_INDEX
from app.io.bundle import load_bundle, read_card, write_card
from app.io.synthetic import iter_split
from app.metrics.scoring import Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.labelled import analyze_labelled
from app.workflows.train import evaluate_miou


def main() -> int:
    """Write ``model.json`` of the ensemble and print the table."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--members", nargs="+", required=True, help="member folders relative to --out")
    p.add_argument("--name", default="ensemble")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="data seed of the test split")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    first = read_card(args.out / args.members[0] / "model.json")
    rows = []
    for member in args.members:
        folder = args.out / member
        card = read_card(folder / "model.json")
        metrics = card.provenance.setdefault("metrics", {})
        own = metrics.get("test", {})
        if own.get("data_seed") == args.seed and own.get("images") == args.count and own.get("size") == args.size:
            scores = own
        else:
            scores = evaluate_miou(folder, "test", args.count, args.size, args.seed)
            if own:
                metrics[f"test_seed{own.get('data_seed')}"] = own
            metrics["test"] = scores
            write_card(card, folder)
        rows.append({"path": member, "name": card.name, "steps": card.provenance.get("steps"), "seed": card.provenance.get("seed"), "test": scores})
    card = {
        "format_version": 1,
        "kind": "ensemble",
        "name": args.name,
        "members": args.members,
        "domain": first.domain,
        "provenance": {"command": "python scripts/ensemble_card.py " + " ".join(sys.argv[1:]), "members_scored": rows},
    }
    (args.out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    analyzer = Analyzer(load_bundle(args.out))
    evaluator = Evaluator(len(analyzer.bundle.card.classes), IGNORE_INDEX)
    with torch.inference_mode():
        for scene in iter_split("test", args.count, size=args.size, seed=args.seed):
            labelled = analyze_labelled(analyzer, scene.image, scene.mask, AnalysisRequest(samples=0))
            evaluator.add(labelled.analysis, labelled.mask)
    ensemble = evaluator.result(analyzer.bundle.class_names)
    card["provenance"]["metrics"] = {
        "test": {"miou": ensemble.segmentation.miou, "pixel_accuracy": ensemble.segmentation.pixel_accuracy, "split": "test", "images": args.count}
    }
    (args.out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    print("| model | steps | seed | test mIoU |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['steps']} | {row['seed']} | {row['test']['miou']:.3f} |")
    print(f"| ensemble (mean softmax, T = 0) | | | {ensemble.segmentation.miou:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
