"""The AudioCLIP paper's Tables 3 and 4, measured with xsearch beside the published numbers.

Table 3: zero-shot classification accuracy (each clip -> the nearest class-name text) on ESC-50
and UrbanSound8K, per official fold and their mean. Table 4: querying (P@1, R@1, mAP) for the
paper's pairings, with the paper's protocol (text queries are the unique label sets, a result
is relevant when its label set equals the query's). Each dataset is ingested with its labels
into an index of its own (`eval-KIND` under --home), so the numbers are those of the vectors
xsearch serves. xsearch's P@1 and R@1 are the standard definitions (see the README's
Evaluation section): compare the paper's "R@1" with HR@1, printed too.

    .venv/bin/python benchmarks/audioclip_tables.py --weights AudioCLIP-Full-Training.pt \
        --esc50 ESC-50-master --urbansound8k UrbanSound8K --audioset AUDIOSET_DIR \
        [--imagenet IMAGENET_VAL_BY_CLASS_NAME] [--paper full|partial] [--out results.json]

Give any subset of the datasets. `--imagenet` is a folder per class named by class name
(the folder-per-class adapter).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import xsearch  # noqa: E402
from xsearch.eval.build import build_index, eval_index_name  # noqa: E402
from xsearch.eval.datasets import load_dataset  # noqa: E402
from xsearch.eval.retrieval import Evaluation  # noqa: E402
from xsearch.models import load_encoder  # noqa: E402
from xsearch.store.store import index_dir  # noqa: E402

# The paper's Table 3 (zero-shot accuracy, %) and Table 4 (P@1, R@1, mAP, %), per training.
PAPER_ZERO_SHOT = {"esc50": {"partial": 69.40}, "urbansound8k": {"full": 68.78}}
PAPER_QUERYING = {  # (dataset, query, result) -> {training: (P@1, R@1, mAP)}
    ("imagenet", "text", "image"): {"partial": (5.42, 84.15, 52.91), "full": (1.61, 89.00, 33.13)},
    ("audioset", "text", "image"): {"partial": (0.81, 46.79, 9.51), "full": (1.31, 74.95, 17.22)},
    ("audioset", "text", "audio"): {"partial": (2.51, 84.38, 23.54), "full": (5.33, 76.13, 30.79)},
    ("audioset", "audio", "image"): {"partial": (0.62, 56.39, 5.45), "full": (1.03, 52.12, 7.22)},
    ("audioset", "image", "audio"): {"partial": (0.61, 61.94, 4.86), "full": (1.20, 53.15, 6.86)},
    ("urbansound8k", "text", "audio"): {
        "partial": (40.81, 47.69, 77.43),
        "full": (42.28, 48.18, 80.04),
    },
    ("esc50", "text", "audio"): {"partial": (51.25, 85.20, 77.20), "full": (51.78, 80.40, 76.97)},
}
ADAPTER = {"esc50": "esc50", "urbansound8k": "urbansound8k", "audioset": "audioset",
           "imagenet": "folders"}  # fmt: skip


def run_dataset(kind: str, root: Path, encoder, home: Path, device: str) -> dict:
    dataset = load_dataset(ADAPTER[kind], root)
    directory = index_dir(eval_index_name(kind), home)
    built = build_index(dataset, directory, encoder)
    index = xsearch.open(directory.name, root=home, device=device)
    index.use_encoder(encoder)  # the encoder that built it, already loaded
    evaluation = Evaluation(index)
    result = {"records": len(dataset), "indexed": built.indexed, "left_out": len(built.missing)}
    if kind in PAPER_ZERO_SHOT:
        paths = {str(r.path): r.fold for r in dataset}
        folds: dict[int, set[int]] = {}
        for asset in index.store.assets.to_pylist():
            if asset["path"] in paths:
                folds.setdefault(paths[asset["path"]], set()).add(asset["asset_id"])
        per_fold = {
            fold: 100 * evaluation.zero_shot("audio", assets)["accuracy"]
            for fold, assets in sorted(folds.items())
        }
        result["zero_shot"] = {
            "per_fold": per_fold,
            "mean": sum(per_fold.values()) / len(per_fold),
        }
    pairs = [(q, t) for (d, q, t) in PAPER_QUERYING if d == kind]
    result["querying"] = {f"{r.query}:{r.result}": r.as_dict() for r in evaluation.pairs(pairs)}
    return result


def tables(results: dict, training: str) -> list[Table]:
    zero = Table(title=f"Table 3: zero-shot accuracy, % (paper: {training} training where given)")
    for col in ("dataset", "folds", "per fold", "mean", "paper", "Δ"):
        zero.add_column(col, justify="left" if col in ("dataset", "per fold") else "right")
    query = Table(title=f"Table 4: querying, % (paper: {training} training)")
    for col in ("dataset", "query", "result", "P@1", "R@1", "mAP", "HR@1",
                "paper P@1", "paper R@1", "paper mAP", "Δ mAP"):  # fmt: skip
        query.add_column(col, justify="left" if col in ("dataset", "query", "result") else "right")
    for kind, r in results.items():
        if "zero_shot" in r:
            z = r["zero_shot"]
            paper = PAPER_ZERO_SHOT[kind]
            published = paper.get(training, next(iter(paper.values())))
            folds = " ".join(f"{v:.1f}" for v in z["per_fold"].values())
            zero.add_row(kind, str(len(z["per_fold"])), folds, f"{z['mean']:.2f}",
                         f"{published:.2f}", f"{z['mean'] - published:+.2f}")  # fmt: skip
        for pair, m in r["querying"].items():
            q, t = pair.split(":")
            p1, r1, ap = PAPER_QUERYING[(kind, q, t)][training]
            ours = [
                100 * (m[k] if m[k] is not None else float("nan"))
                for k in ("P@1", "R@1", "mAP", "HR@1")
            ]
            paper = (f"{p1:.2f}", f"{r1:.2f}", f"{ap:.2f}")
            query.add_row(kind, q, t, *(f"{v:.2f}" for v in ours), *paper, f"{ours[2] - ap:+.2f}")
    return [zero, query]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in ADAPTER:
        parser.add_argument(f"--{kind}", type=Path, help=f"{kind} root folder")
    parser.add_argument("--weights", help="AudioCLIP checkpoint (or 'random': meaningless)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--paper", choices=("full", "partial"), default="full",
                        help="which of the paper's columns to compare with")  # fmt: skip
    parser.add_argument("--home", type=Path, help="where the eval indexes go (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/audioclip_tables.json"
    )
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in ADAPTER if getattr(args, k) is not None}
    if not given:
        parser.error("give at least one dataset root (--esc50, --urbansound8k, ...)")
    encoder = load_encoder(args.weights, config=args.config, device=args.device)
    if encoder.weights.is_random:
        print("RANDOM weights: these numbers are meaningless (chance level).", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="xsearch-tables-") as tmp:
        home = args.home or Path(tmp)
        results = {k: run_dataset(k, root, encoder, home, args.device) for k, root in given.items()}
    for table in tables(results, args.paper):
        Console().print(table)
    report = {"weights": "random" if encoder.weights.is_random else str(encoder.weights.path),
              "paper_training": args.paper, "datasets": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
