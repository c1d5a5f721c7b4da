"""Lesson 08's figures: fine-tuning on the synthetic writer, and training from scratch with augmentation.

1. The base model (``load_or_train()``, or ``--checkpoint``) is scored on the synthetic writer's held-out
   digits (whole drawing sessions, about 30 % of ``--per-digit`` × 10 drawn in ``--sessions`` sittings,
   held out as lesson 08 does with :func:`split_by_session`) and on MNIST's 5,000 validation images,
   before and after :func:`mnistlib.handwriting.finetune.fine_tune` with its defaults.
2. For each augmentation in ``--variants`` a model of the same architecture is trained from scratch
   (``--epochs`` epochs on ``--subset`` MNIST images, OneCycle Adam up to 5e-3, batches of 64) and
   scored on the same held-out digits, on all the synthetic digits and on MNIST validation.

Prints a markdown table and stores the figures under ``"handwriting"`` in ``benchmarks/results.json``
(other keys kept; written atomically). Usage::

    MNISTLIB_DATA=... OMP_NUM_THREADS=1 python benchmarks/handwriting.py [--epochs 2] [--subset N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from machine import Conditions
from store import save_result
from torch.utils.data import DataLoader, Subset

from mnistlib.checkpoints import load_checkpoint
from mnistlib.data import get_data
from mnistlib.evaluation import predict_all
from mnistlib.handwriting.finetune import STRONGER_AUGMENT, HandAugment, fine_tune, train_with_augmentation
from mnistlib.handwriting.store import HandwritingDataset, HandwritingStore, split_by_session
from mnistlib.handwriting.synthetic import make_synthetic_digits
from mnistlib.recipes import load_or_train

VARIANTS = {
    "none": HandAugment(),
    "thickness+slant (STRONGER_AUGMENT)": STRONGER_AUGMENT,
    "thickness+slant+elastic 1": HandAugment(thickness=1, slant=0.3, elastic=1),
    "thickness+slant+elastic 2+rotation 5": HandAugment(thickness=1, slant=0.3, elastic=2, rotation=5),
    "all (rotation 12, shift 2, zoom 15 %, elastic 2, thickness, slant)": HandAugment(
        rotation=12, shift=2, scale=0.15, elastic=2, thickness=1, slant=0.3),
}


def accuracy(model: torch.nn.Module, loader) -> float:
    return predict_all(model, loader, keep_images=False).accuracy



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint",
                        help="base model (default: load_or_train(): lesson 03's run, else the quick model)")
    parser.add_argument("--per-digit", type=int, default=20, help="synthetic samples per digit")
    parser.add_argument("--sessions", type=int, default=4, help="sittings the synthetic writer draws in")
    parser.add_argument("--held-out", type=float, default=0.3, help="share of the digits held out, as whole sessions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2, help="epochs for each from-scratch model")
    parser.add_argument("--subset", type=int, default=None, help="MNIST training images (default: all)")
    parser.add_argument("--variants", default=",".join(str(i) for i in range(len(VARIANTS))),
                        help=f"comma-separated indices into: {list(VARIANTS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    conditions = Conditions("handwriting.py", None)
    ckpt = load_checkpoint(args.checkpoint) if args.checkpoint else load_or_train()
    store = HandwritingStore(tempfile.mkdtemp(prefix="synthetic_"))
    make_synthetic_digits(store, per_digit=args.per_digit, seed=args.seed, sessions=args.sessions)
    mine = HandwritingDataset(store, mean=ckpt.mean, std=ckpt.std)
    tune, held = split_by_session([s.session for s in mine.samples], args.held_out, seed=args.seed)
    held_loader, all_loader = DataLoader(Subset(mine, held), 256), DataLoader(mine, 256)
    val = get_data().val
    tuned = fine_tune(ckpt, mine.uint8_images()[tune], mine.targets[tune], seed=args.seed, device="cpu")
    rows = [("base model: " + ckpt.name, ckpt.model), ("fine-tuned (defaults)", tuned)]
    out = {"base": Path(ckpt.path).name if ckpt.path else ckpt.name, "base_tag": ckpt.hparams.get("tag"),
           "base_epochs": ckpt.epoch, "synthetic": len(mine), "held_out": len(held), "sessions": args.sessions,
           "rows": []}
    for index in map(int, args.variants.split(",")):
        name, augment = list(VARIANTS.items())[index]
        model, _ = train_with_augmentation(ckpt.name, augment=augment, epochs=args.epochs, subset=args.subset,
                                           seed=args.seed, device="cpu")
        rows.append((f"from scratch, {name}", model))
    print(f"{len(mine)} synthetic digits ({len(held)} held out); from scratch: {args.epochs} epoch(s) on "
          f"{args.subset or 'all'} images\n")
    print("| model | held-out synthetic | all synthetic | MNIST validation |\n|---|---:|---:|---:|")
    for name, model in rows:
        h, v = accuracy(model, held_loader), accuracy(model, val)
        a = None if model is tuned else accuracy(model, all_loader)  # the fine-tuned one trained on 70 % of them
        print(f"| {name} | {h:.1%} | {'—' if a is None else f'{a:.1%}'} | {v:.2%} |")
        out["rows"].append({"model": name, "held_out": round(h, 4), "all_synthetic": None if a is None else round(a, 4),
                            "mnist_val": round(v, 4)})
    out.update(epochs=args.epochs, subset=args.subset, conditions=conditions.finish())
    save_result("handwriting", out)


if __name__ == "__main__":
    main()
