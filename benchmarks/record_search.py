"""Try a variant of the record recipe and print its validation accuracy — the test set is never scored.

This is how the record recipe in ``mnistlib.fast.FAST_RECIPES["record"]`` was chosen: each variant
trains with ``mnistlib.training.fit`` once per seed and reports the validation accuracy after its last
epoch, one markdown table row per variant. Only ``benchmark.py --record`` reads the test set, once,
for the recipe this search picked.

    MNISTLIB_DATA=/path/to/data python benchmarks/record_search.py --epochs 25 --scale 0.1 --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from mnistlib.fast import FAST_RECIPES
from torch import nn

from mnistlib.checkpoints import load_checkpoint, save_checkpoint
from mnistlib.data import get_augment, get_data
from mnistlib.models import count_parameters, get_model
from mnistlib.training import evaluate, fit, recalibrate_batchnorm


class Distilled(nn.Module):
    """The student; in training mode it also runs its frozen teachers on the same (augmented) batch.

    The teachers' temperature-softened probabilities, averaged, wait in ``soft_targets`` for
    :func:`distillation_loss`. They sit in a plain list, so they are not this module's parameters:
    the optimizer never sees them and ``train()`` leaves them in eval mode.
    """

    def __init__(self, student: nn.Module, teachers: list[nn.Module], temperature: float) -> None:
        super().__init__()
        self.student = student
        self._teachers = [t.eval() for t in teachers]
        self.temperature = temperature
        self.soft_targets: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                probs = [F.softmax(t(x) / self.temperature, dim=1) for t in self._teachers]
                self.soft_targets = torch.stack(probs).mean(dim=0)
        return self.student(x)


def distillation_loss(model: Distilled, alpha: float):
    """(1 − α)·cross-entropy with the labels + α·T²·KL(teachers ‖ student at temperature T) (Hinton et al. 2015)."""
    t = model.temperature

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, labels)
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), model.soft_targets, reduction="batchmean") * t * t
        return (1 - alpha) * hard + alpha * soft

    return loss


def report_teachers(teachers: list[nn.Module], val: Iterable) -> None:
    """Print the teachers' averaged validation accuracy, and how many validation images all of them get wrong.

    An ensemble can only pass on what its members disagree about: images every teacher misreads
    are beyond what distillation from them can fix.
    """
    wrong, voted_right, seen = [], 0, 0
    with torch.no_grad():
        for x, y in val:
            probs = torch.stack([F.softmax(t.eval()(x), dim=1) for t in teachers])  # [teacher, image, class]
            wrong.append(probs.argmax(dim=2) != y)
            voted_right += int((probs.mean(dim=0).argmax(dim=1) == y).sum())
            seen += len(y)
    wrong_by = torch.cat(wrong, dim=1)
    print(f"  the {len(teachers)} teachers' averaged prediction: validation {voted_right / seen:.2%}; "
          f"validation errors per teacher {' / '.join(str(int(n)) for n in wrong_by.sum(dim=1))}, "
          f"{int(wrong_by.all(dim=0).sum())} of them made by every teacher", flush=True)


def main(argv: list[str] | None = None) -> None:
    record = FAST_RECIPES["record"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="RecordNet filter counts")
    parser.add_argument("--pool-after", type=int, nargs="+", default=None, help="conv indices followed by a max-pool")
    parser.add_argument("--epochs", type=int, default=record.epochs)
    parser.add_argument("--augment", default=record.augment, help="a named augmentation (mnistlib.data)")
    parser.add_argument("--scale", type=float, default=None, help="add a random zoom of up to ± this fraction")
    parser.add_argument("--elastic", type=float, default=None, help="add an elastic warp of up to this many pixels")
    parser.add_argument("--lr", type=float, default=record.lr)
    parser.add_argument("--batch-size", type=int, default=record.batch_size)
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="fit's label_smoothing")
    parser.add_argument("--weight-decay", type=float, default=None, help="SGD's weight decay")
    parser.add_argument("--recalibrate-bn", action="store_true",
                        help="also report validation after re-estimating BatchNorm statistics on un-augmented "
                             "training images (same run, so the two figures are paired)")
    parser.add_argument("--separable", action="store_true",
                        help="every conv after the first: a depthwise 3×3 then a 1×1 conv (RecordNet(separable=True))")
    parser.add_argument("--teachers", type=Path, nargs="+", default=None,
                        help="distil from these checkpoints (e.g. --save-dir output): their averaged soft predictions")
    parser.add_argument("--only-report-teachers", action="store_true",
                        help="print the --teachers' validation figures and stop: no training")
    parser.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the teachers' term in the loss")
    parser.add_argument("--temperature", type=float, default=4.0, help="softmax temperature for distillation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--subset", type=int, default=None, help="train on N images (a smoke test)")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="save each seed's trained model as seed<N>.pth here (mnistlib checkpoints)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    options = dict(record.model_options)
    if args.widths:
        options["widths"] = args.widths
    if args.pool_after:
        options["pool_after"] = args.pool_after
    if args.separable:
        options["separable"] = True
    teachers = [load_checkpoint(path).model for path in args.teachers or []]
    augment = get_augment(args.augment)
    if args.scale is not None:
        augment = replace(augment, scale=args.scale)
    if args.elastic is not None:
        augment = replace(augment, elastic=args.elastic)
    kwargs = record.fit_kwargs() | {"epochs": args.epochs, "lr": args.lr}
    if args.label_smoothing:
        kwargs["label_smoothing"] = args.label_smoothing
    if args.weight_decay is not None:
        kwargs["optimizer_options"] = kwargs["optimizer_options"] | {"weight_decay": args.weight_decay}
    kwargs.pop("augment", None)
    kwargs.pop("batch_size", None)

    if args.only_report_teachers:
        if not teachers:
            parser.error("--only-report-teachers needs --teachers")
        report_teachers(teachers, get_data(args.batch_size, "none").val)
        return
    accs, recal_accs, seconds, params = [], [], [], 0
    for seed in args.seeds:
        data = get_data(args.batch_size, augment, subset=args.subset, seed=seed)
        torch.manual_seed(seed)
        model = get_model(record.model, **options)
        params = count_parameters(model)
        if teachers and seed == args.seeds[0]:
            report_teachers(teachers, data.val)
        t0 = time.perf_counter()
        trained = model
        if teachers:
            trained = Distilled(model, teachers, args.temperature)
            kwargs["loss_fn"] = distillation_loss(trained, args.distill_alpha)
        history = fit(trained, data, **kwargs, seed=seed, save_checkpoints=False, progress=False, verbose=False)
        seconds.append(time.perf_counter() - t0)
        accs.append(history.val_acc[-1])
        if args.save_dir is not None:
            saved_hparams = {k: v for k, v in kwargs.items() if k != "loss_fn"} | {"epochs": args.epochs}
            if teachers:
                saved_hparams["distilled_from"] = [str(p) for p in args.teachers]
            args.save_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(args.save_dir / f"seed{seed}.pth", model, hparams=saved_hparams,
                            history=history.to_dict(), mean=data.mean, std=data.std, epoch=len(history.epoch))
        print(f"  seed {seed}: validation {accs[-1]:.2%} after {len(history.epoch)} epochs, {seconds[-1]:.0f} s",
              flush=True)
        if args.recalibrate_bn:
            recalibrate_batchnorm(model, data.train.without_augmentation())
            recal_accs.append(evaluate(model, data.val)[1])
            print(f"  seed {seed}: validation {recal_accs[-1]:.2%} after re-estimating BatchNorm statistics",
                  flush=True)
    mean = statistics.mean(accs)
    print(f"| widths {options.get('widths', 'default')}, pool after {options.get('pool_after', 'default')}, "
          f"{args.epochs} epochs, {augment}, batch {args.batch_size}, max lr {args.lr}"
          f"{f', label smoothing {args.label_smoothing}' if args.label_smoothing else ''}"
          f"{f', weight decay {args.weight_decay}' if args.weight_decay is not None else ''}"
          f"{', separable convs' if args.separable else ''}"
          f"{f', distilled from {len(teachers)} teachers' if teachers else ''}"
          f"{f' (α {args.distill_alpha}, T {args.temperature})' if teachers else ''}"
          f" | {params:,} | "
          f"{' / '.join(f'{a:.2%}' for a in accs)} | {mean:.2%} | {statistics.mean(seconds):.0f} |", flush=True)
    if recal_accs:
        print(f"| … the same runs, BatchNorm statistics re-estimated on un-augmented training images | {params:,} | "
              f"{' / '.join(f'{a:.2%}' for a in recal_accs)} | {statistics.mean(recal_accs):.2%} | – |", flush=True)


if __name__ == "__main__":
    main()
