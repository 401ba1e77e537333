"""Zero-shot classification and caption retrieval of each model, measured with xsearch beside
the numbers its authors published.

For each `--model` and each dataset root given: ESC-50 and UrbanSound8K zero-shot accuracy
(each clip -> the nearest class name, in the model's published prompt), per official fold, over
all clips and as the mean of the folds; Clotho (evaluation split) and AudioCaps (test split)
text->audio and audio->text R@1, R@5, R@10 and mAP@10 (the caption protocol: see the README's
Evaluation section). Each dataset is ingested into an index of its own per model
(`eval-KIND-MODEL` under --home), so the numbers are those of the vectors xsearch serves.

    .venv/bin/python benchmarks/clap_tables.py --model laion-clap --model msclap-2023 \
        --esc50 ESC-50-master --urbansound8k UrbanSound8K --clotho clotho --audiocaps audiocaps

Weights are resolved as for any index (XSEARCH_WEIGHTS, then the cache, per model); `--weights
random` exercises the pipeline without trained weights (meaningless numbers). With no dataset
given it prints what it would run, and the published numbers, and exits.

Published numbers are data below, each with where it is printed. Numbers that could not be
confirmed in a published source are left out (see NOT_CONFIRMED) and shown as "–".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing xsearch
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.audioclip_tables import PAPER_ZERO_SHOT  # noqa: E402

DATASETS = ("esc50", "urbansound8k", "clotho", "audiocaps")
CLASSIFICATION = ("esc50", "urbansound8k")
CAPTIONS = ("clotho", "audiocaps")
DIRECTIONS = ("text:audio", "audio:text")
CAPTION_METRICS = ("R@1", "R@5", "R@10", "mAP@10")


@dataclass(frozen=True)
class Published:
    value: float  # percent
    scope: str  # which clips: "all", "fold 1", "mean of folds"
    source: str  # where the number is printed


# (model, dataset, metric) -> the published number; metric "zero-shot" or "DIRECTION R@k".
PUBLISHED: dict[tuple[str, str, str], Published] = {
    # AudioCLIP (Guzhov et al., ICASSP 2022, arXiv:2106.13043), Table 3, as
    # benchmarks/audioclip_tables.py records it: ESC-50 with the partially trained model,
    # UrbanSound8K with the fully trained one; the mean over the official folds.
    ("audioclip", "esc50", "zero-shot"): Published(
        PAPER_ZERO_SHOT["esc50"]["partial"], "mean of folds", "AudioCLIP paper, Table 3 (partial)"
    ),
    ("audioclip", "urbansound8k", "zero-shot"): Published(
        PAPER_ZERO_SHOT["urbansound8k"]["full"], "mean of folds", "AudioCLIP paper, Table 3 (full)"
    ),
    # LAION-AI/CLAP README, "Zeroshot Classification with ESC50 official split": the default
    # non-fusion checkpoint of the pip package (630k-audioset-best.pt, the README's "Pretrained
    # Models") on the first official split's test fold, "R@1: 0.9275" (its top-1 accuracy).
    ("laion-clap", "esc50", "zero-shot"): Published(
        92.75, "fold 1", "LAION-AI/CLAP README, ESC50 official split (R@1 0.9275)"
    ),
    # microsoft/CLAP README and examples/zero_shot_classification.py, version 2023:
    # "ESC50 Accuracy: 93.9%", over all 2000 clips.
    ("msclap-2023", "esc50", "zero-shot"): Published(
        93.9, "all", "microsoft/CLAP README, zero-shot ESC50 (version 2023)"
    ),
}
# Left out: numbers printed only in the papers' tables, which could not be confirmed from a
# text source here (the LAION-CLAP paper, arXiv:2211.06687, Table 2 and 3; the Microsoft CLAP
# 2023 paper, arXiv:2309.05767, its retrieval and zero-shot tables).
NOT_CONFIRMED = (
    "laion-clap: UrbanSound8K zero-shot; Clotho and AudioCaps text->audio / audio->text R@1, R@10",
    "msclap-2023: UrbanSound8K zero-shot; Clotho and AudioCaps text->audio / audio->text R@1, R@10",
    "audioclip: no Clotho or AudioCaps numbers were published",
)

# The zero-shot prompt each model's authors use ({} = the class name, '_' read as a space).
PROMPTS: dict[str, str | None] = {
    "audioclip": None,  # AudioCLIP paper: the bare class names
    "laion-clap": "This is a sound of {}",  # LAION-AI/CLAP README, the ESC50 example
    "msclap-2023": "this is the sound of {}",  # microsoft/CLAP examples/zero_shot_classification.py
}


def released_model(model: str) -> str:
    """The released model a config stands for: a tiny test config is its full model's."""
    return model.removesuffix("-tiny")


def published(model: str, dataset: str, metric: str) -> Published | None:
    return PUBLISHED.get((released_model(model), dataset, metric))


def run_dataset(kind: str, root: Path, model: str, encoder, args: argparse.Namespace) -> dict:
    """Evaluate one dataset with one model: the caption metrics, or zero-shot accuracy per
    fold, over all clips and as the mean of the folds."""
    import xsearch
    from xsearch.api import evaluate_dataset
    from xsearch.eval.datasets import load_dataset
    from xsearch.eval.retrieval import Evaluation

    name = f"eval-{kind}-{model}"
    prompt = PROMPTS.get(released_model(model))
    common = {"home": args.home, "encoder": encoder, "workers": args.workers, "device": args.device}
    if kind in CAPTIONS:
        result = evaluate_dataset(kind, root, name, **common)
        metrics = {
            f"{r.query}:{r.result}": {m: 100 * r.metrics[m] for m in CAPTION_METRICS}
            | {"queries": r.metrics["queries"], "candidates": r.candidates}
            for r in result.rows
        }
        return {"records": result.build.records if result.build else None,
                "left_out": len(result.left_out), "captions": metrics}  # fmt: skip
    result = evaluate_dataset(kind, root, name, pairs="text:audio", prompt=prompt, **common)
    index = xsearch.open(name, root=args.home, device=args.device)
    index.use_encoder(encoder)
    evaluation = Evaluation(index)
    folds: dict[int, set[int]] = {}
    fold_of = {str(r.path): r.fold for r in load_dataset(kind, root)}
    for asset in index.store.assets.to_pylist():
        fold = fold_of.get(asset["path"])
        if fold is not None:
            folds.setdefault(fold, set()).add(asset["asset_id"])
    per_fold = {
        fold: 100 * evaluation.zero_shot("audio", assets, prompt=prompt)["accuracy"]
        for fold, assets in sorted(folds.items())
    }
    return {
        "records": result.build.records if result.build else None,
        "left_out": len(result.left_out),
        "prompt": prompt,
        "zero_shot": {
            "per_fold": per_fold,
            "mean of folds": sum(per_fold.values()) / len(per_fold),
            "all": 100 * result.zero_shot["audio"]["accuracy"],
        },
    }


def ours_for(zero: dict, scope: str) -> float | None:
    """Our accuracy over the clips a published number covers."""
    if scope.startswith("fold "):
        return zero["per_fold"].get(int(scope.split()[1]))
    return zero.get(scope)


def tables(results: dict) -> list[Table]:
    zero = Table(title="zero-shot accuracy, %")
    for col in ("model", "dataset", "per fold", "all", "mean of folds",
                "published", "on", "ours on it", "Δ", "source"):  # fmt: skip
        zero.add_column(col, justify="left" if col in ("model", "dataset", "per fold", "on",
                                                       "source") else "right")  # fmt: skip
    caps = Table(title="caption retrieval, %")
    for col in ("model", "dataset", "direction", *CAPTION_METRICS,
                "published R@1", "published R@10", "Δ R@1"):  # fmt: skip
        caps.add_column(
            col, justify="left" if col in ("model", "dataset", "direction") else "right"
        )
    for model, data in results.items():
        for kind, r in data["datasets"].items():
            if "zero_shot" in r:
                z = r["zero_shot"]
                pub = published(model, kind, "zero-shot")
                ours = ours_for(z, pub.scope) if pub else None
                zero.add_row(
                    model, kind, " ".join(f"{v:.1f}" for v in z["per_fold"].values()),
                    f"{z['all']:.2f}", f"{z['mean of folds']:.2f}",
                    _num(pub.value if pub else None), pub.scope if pub else "–", _num(ours),
                    _num(ours - pub.value if pub and ours is not None else None, sign=True),
                    pub.source if pub else "not confirmed",
                )  # fmt: skip
            for direction, m in r.get("captions", {}).items():
                r1 = published(model, kind, f"{direction} R@1")
                r10 = published(model, kind, f"{direction} R@10")
                caps.add_row(
                    model, kind, direction, *(_num(m[k]) for k in CAPTION_METRICS),
                    _num(r1.value if r1 else None), _num(r10.value if r10 else None),
                    _num(m["R@1"] - r1.value if r1 else None, sign=True),
                )  # fmt: skip
    return [zero, caps]


def _num(value: float | None, sign: bool = False) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _console() -> Console:
    """stdout; at a width that keeps the tables whole when it is a pipe or a file."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def plan(models: list[str]) -> None:
    """What a run would do, and the published numbers it compares with."""
    out = _console()
    out.print(f"models: {', '.join(models)}")
    out.print("give dataset roots to run: " + " ".join(f"--{k} ROOT" for k in DATASETS))
    table = Table(title="published numbers compared with")
    for col in ("model", "dataset", "metric", "value, %", "on", "source"):
        table.add_column(col)
    for (model, kind, metric), p in PUBLISHED.items():
        table.add_row(model, kind, metric, f"{p.value:.2f}", p.scope, p.source)
    out.print(table)
    out.print("not confirmed, left out: " + "; ".join(NOT_CONFIRMED), soft_wrap=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help="a model name; repeat for several (default: laion-clap and "
                        "msclap-2023)")  # fmt: skip
    for kind in DATASETS:
        parser.add_argument(f"--{kind}", type=Path, metavar="ROOT", help=f"{kind} root folder")
    parser.add_argument("--weights", help="'random' (meaningless numbers) or a checkpoint path "
                        "(one model only); default: each model's, resolved as usual")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: inline)")
    parser.add_argument("--home", type=Path, help="where the eval indexes go (default: temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/clap_tables.json")
    args = parser.parse_args(argv)
    args.models = args.models or ["laion-clap", "msclap-2023"]
    if args.weights not in (None, "random") and len(args.models) > 1:
        parser.error("a checkpoint path is one model's: give one --model with it")
    return args


def main(argv: list[str] | None = None) -> dict:
    from xsearch.models import load_encoder

    args = parse_args(argv)
    given = {k: getattr(args, k) for k in DATASETS if getattr(args, k) is not None}
    if not given:
        plan(args.models)
        return {}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="xsearch-clap-tables-") as tmp:
        args.home = args.home or Path(tmp)
        for model in args.models:
            encoder = load_encoder(args.weights, config=model, device=args.device,
                                   batch_size=args.batch_size)  # fmt: skip
            random = encoder.weights.is_random
            if random:
                print(f"{model}: RANDOM weights, the numbers are meaningless.", file=sys.stderr)
            results[model] = {
                "weights": "random" if random else str(encoder.weights.path),
                "datasets": {k: run_dataset(k, root, model, encoder, args)
                             for k, root in given.items()},
            }  # fmt: skip
    for table in tables(results):
        _console().print(table)
    report = {
        "models": results,
        "published": [
            {"model": m, "dataset": d, "metric": k} | asdict(p)
            for (m, d, k), p in PUBLISHED.items()
        ],
        "not_confirmed": list(NOT_CONFIRMED),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
