"""Command line: ``python -m mnistlib data import DIR``, ``train``, ``evaluate`` and ``predict``.

Bad arguments or files end with exit code 2 and a one-line message, never a traceback.

    python -m mnistlib train --model batchnorm --epochs 5 --scheduler onecycle --lr 3e-3
    python -m mnistlib train --recipe one-by-one            # a source project's recipe
    python -m mnistlib train --resume checkpoints/final_model_20240131_142501.pth --epochs 2
    python -m mnistlib evaluate checkpoints/best_model_20240131_142501.pth
    python -m mnistlib predict checkpoints/best_model_20240131_142501.pth my_digit.png
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlib._support.quiet import first_line, tolerant_output
from mnistlib._support.signals import startup_done
from mnistlib.config import CHECKPOINTS_ENV, DATA_ENV, data_root

from .export_command import add_export_command

if TYPE_CHECKING:
    from mnistlib.checkpoints import Checkpoint


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


def _os_problem(exc: OSError, where: object = None) -> str:
    """An ``OSError`` in one line: the path it concerns (or ``where``) and why (disk full, name too long…)."""
    path = exc.filename if exc.filename is not None else where
    why = exc.strerror or first_line(exc)
    return f"{path}: {why}" if path is not None else why


def _check_file(path: str, what: str) -> None:
    """Refuse, in one line, a ``path`` that is not an existing file (missing, a folder, a name too long…)."""
    try:
        if Path(path).is_file():
            return
    except OSError as exc:
        raise CLIError(f"{what} {_os_problem(exc, path)}") from None
    raise CLIError(f"no such {what}: {path}")


def _data_import(args: argparse.Namespace) -> int:
    from mnistlib.data import IDXFormatError, import_idx

    try:
        target = import_idx(args.source, args.root)
    except IDXFormatError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(_os_problem(exc)) from None
    print(f"imported the four MNIST files into {target}")
    return 0


def _parse_option(text: str) -> tuple[str, str]:
    """``hidden=128`` → ("hidden", "128"); the value is converted once the model is known (:func:`_typed_options`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _convert(name: str, key: str, text: str, default: object) -> object:
    """``text`` as the type of the model option's default: bool, int, float, a tuple of ints, or text."""
    truth = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        if isinstance(default, bool):
            return truth[text.strip().lower()]
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (tuple, list)):
            return tuple(int(v) for v in text.replace(",", " ").split())
    except (KeyError, ValueError):
        kind = "true or false" if isinstance(default, bool) else f"a {type(default).__name__}"
        raise CLIError(f"--option {key}={text}: model {name!r} expects {kind} (default {default!r})") from None
    return text


def _typed_options(name: str, given: list[tuple[str, str]]) -> dict:
    """The ``--option`` values of model ``name``, each converted to the type of its default."""
    from mnistlib.models import model_options

    accepted = model_options(name)
    unknown = sorted({k for k, _ in given} - set(accepted))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "no options"
        raise CLIError(f"model {name!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}")
    return {k: _convert(name, k, v, accepted[k]) for k, v in given}


def _number(text: str) -> float:
    """``text`` as a float, or argparse's one-line error."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _fraction(text: str) -> float:
    """A target accuracy: ``0.99`` (a fraction), ``99%`` or ``99`` (percent) all mean 99%."""
    value = _number(text.rstrip("%"))
    if text.endswith("%") or value > 1:
        value /= 100
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"target accuracy must be a fraction in (0, 1] or a percentage in (0, 100], "
                                         f"got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a probability in [0, 1], got {text}")
    return value


def _learning_rate(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and 0 < value <= 10):
        raise argparse.ArgumentTypeError(f"the learning rate must be a number in (0, 10], got {text}")
    return value


def _load(path: str, device: object = "cpu") -> Checkpoint:
    """Load a checkpoint, turning any problem with the file into a one-line :class:`CLIError`."""
    from mnistlib.checkpoints import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, device)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None


def _writable_folder(path: str | None, what: str) -> Path | None:
    """``path`` as a folder that exists or can be made; a file there is refused before any training."""
    if path is None:
        return None
    folder = Path(path)
    try:
        if folder.exists() and not folder.is_dir():
            raise CLIError(f"{what} {folder} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no permission, a name too long for the file system, a full disk…
        raise CLIError(f"{what} {folder}: cannot create it ({exc.strerror or first_line(exc)})") from None
    return folder


#: The largest model ``train`` builds: far beyond anything MNIST needs, far below what exhausts a laptop.
MAX_PARAMETERS = 50_000_000


def _check_size(name: str, options: dict) -> None:
    """Refuse, before allocating anything, options that are invalid or make the model absurdly large."""
    from mnistlib.models import parameters_of

    try:
        n = parameters_of(name, **options)
    except (TypeError, ValueError) as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    except (RuntimeError, OverflowError, MemoryError) as exc:
        raise CLIError(f"model {name!r} cannot be built with {options}: {' '.join(str(exc).split())[:200]}") from None
    if n > MAX_PARAMETERS:
        raise CLIError(f"model {name!r} with {options} would have {n:,} parameters, more than the "
                       f"{MAX_PARAMETERS:,} this command builds")


def _train_settings(args: argparse.Namespace) -> tuple[object, dict]:
    """The recipe to train and the overrides for :func:`mnistlib.recipes.train`, from the arguments."""
    from mnistlib.config import quick_mode
    from mnistlib.recipes import Recipe, get_recipe

    if not (args.model or args.recipe or args.resume):
        raise CLIError("train needs --model NAME, --recipe NAME or --resume CHECKPOINT")
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
             "scheduler": args.scheduler, "augment": args.augment, "target_accuracy": args.target_accuracy,
             "seed": args.seed, "subset": args.subset}
    overrides = {k: v for k, v in given.items() if v is not None}
    if args.scheduler is not None and not args.resume:
        overrides["scheduler_options"] = {}  # a recipe's options belong to its own scheduler
    if args.resume:
        if args.model or args.option:
            raise CLIError("--model and --option cannot change a resumed run: its model is rebuilt from the checkpoint")
        ckpt = _load(args.resume)
        if args.epochs is None and int(ckpt.hparams.get("epochs") or 0) <= ckpt.epoch:
            raise CLIError(f"{Path(args.resume).name} finished its {ckpt.epoch} epochs: "
                           "pass --epochs N to train N more")
        return None, overrides | {"resume": ckpt}
    recipe = get_recipe(args.recipe) if args.recipe else Recipe("custom", f"a {args.model} run", args.model)
    name = args.model or recipe.model
    options = {**recipe.model_options, **_typed_options(name, args.option or [])}
    _check_size(name, options)
    if quick_mode() and args.epochs is None and args.subset is None:
        overrides |= {"epochs": 1, "subset": 5_000}
        print("MNISTLIB_QUICK is set: 1 epoch on 5,000 training images (pass --epochs/--subset to change)")
    if args.recipe:
        print(f"Recipe: {recipe.title} — {name}, {overrides.get('epochs', recipe.epochs)} epochs "
              f"(claimed: {recipe.claimed_accuracy})")
    return recipe, overrides | {"model": name, "model_options": options}


def _train(args: argparse.Namespace) -> int:
    from mnistlib.callbacks import TrainingDiverged
    from mnistlib.checkpoints import CheckpointError
    from mnistlib.data import MNISTNotFoundError
    from mnistlib.recipes import train

    recipe, overrides = _train_settings(args)
    folder = _writable_folder(args.checkpoint_dir, "--checkpoint-dir")
    figures = _writable_folder(args.figures, "--figures")
    if args.target_accuracy is not None:
        print(f"target validation accuracy: {args.target_accuracy:.2%}")
    try:
        run = train(recipe, device=args.device, checkpoint_dir=folder, verbose=not args.quiet, **overrides)
    except (MNISTNotFoundError, CheckpointError, TrainingDiverged) as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    except (TypeError, ValueError) as exc:  # a bad option value or device, a subset too large…
        raise CLIError(" ".join(str(exc).split())) from None
    except (RuntimeError, MemoryError) as exc:  # e.g. options that make a model too large to allocate
        raise CLIError(f"training failed: {' '.join(str(exc).split())[:300]}") from None
    except OSError as exc:  # a full disk, a folder that went away: the checkpoints written so far stay
        where = folder or "the checkpoint folder"
        raise CLIError(f"training stopped: cannot write {_os_problem(exc, where)}") from None
    history = run.history
    if args.quiet:
        for kind, path in (("best", history.best_path), ("final", history.final_path)):
            if path is not None:
                print(f"{kind} checkpoint: {path}")
    chosen = history.best_path or history.final_path
    if not args.no_figures and chosen:
        try:
            _write_figures(history, chosen, figures or chosen.parent)
        except OSError as exc:
            raise CLIError(f"the figures: cannot write {_os_problem(exc, figures or chosen.parent)}") from None
    return 130 if history.interrupted else 0


def _write_figures(history: object, checkpoint: Path, folder: Path) -> None:
    """``training_history.png`` and ``predictions.png``: the best checkpoint on the first validation images
    (the test set gives final numbers only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistlib.data import get_data
    from mnistlib.evaluation import plot_predictions, predict_all
    from mnistlib.plots import plot_history, save_figure

    fig = plot_history(history)
    print(f"wrote {save_figure(fig, folder / 'training_history.png')}")
    plt.close(fig)
    best = _load(str(checkpoint))
    first = get_data(batch_size=20, eval_batch_size=20).val
    fig = plot_predictions(predict_all(best.model, [next(iter(first))]), n=20)
    print(f"wrote {save_figure(fig, folder / 'predictions.png')}")
    plt.close(fig)


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from mnistlib import evaluation as ev
    from mnistlib.data import MNISTNotFoundError, TensorLoader, mnist_tensors
    from mnistlib.devices import pick_device

    try:
        device = pick_device(args.device or "cpu", verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None
    ckpt = _load(args.checkpoint, device)
    try:
        images, labels = mnist_tensors(train=False)
    except MNISTNotFoundError as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    loader = TensorLoader(images, labels, args.batch_size, shuffle=False, mean=ckpt.mean, std=ckpt.std,
                          device=device)
    result = ev.predict_all(ckpt.model, loader, device=device, keep_images=False)
    acc = result.accuracy
    per_class = ev.per_class_accuracy(result.preds, result.labels).tolist()
    loss = float(-result.probs.gather(1, result.labels[:, None]).clamp_min(1e-12).log().mean())
    counts = torch.bincount(labels, minlength=10).tolist()
    print(f"{Path(args.checkpoint).name}: model {ckpt.name!r}, trained {ckpt.epoch} epoch(s)")
    print(f"test accuracy: {acc:.2%} ({round(acc * len(labels)):,} of {len(labels):,})  test loss: {loss:.4f}")
    print("per-class accuracy:")
    for digit, (a, n) in enumerate(zip(per_class, counts, strict=True)):
        print(f"  {digit}: {a:7.2%}  ({n:,} images)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    ckpt = _load(args.checkpoint)
    try:
        from mnistlib.drawing import DrawingError, predict_image
    except ImportError as exc:  # pragma: no cover - drawing module missing
        raise CLIError(f"prediction needs mnistlib.drawing: {exc}") from None
    for path in args.images:
        _check_file(path, "image file")
    failed = 0
    for path in args.images:
        try:
            pred = predict_image(path, ckpt, threshold=args.threshold)
        except DrawingError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        others = ", ".join(f"{d} {p:.0%}" for d, p in pred.top(args.top)[1:])
        answer = f"{pred.digit}  ({pred.confidence:.1%} sure" if pred.sure else (
            f"not sure — maybe {pred.digit}  ({pred.confidence:.1%}")
        print(f"{path}: {answer}{'; then ' + others if others else ''})")
    return 2 if failed else 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from mnistlib.data import list_augmentations
    from mnistlib.models import list_models
    from mnistlib.recipes import OPTIMIZERS, RECIPES, SCHEDULERS

    tr = sub.add_parser(
        "train",
        help="train a model and save best/final checkpoints",
        description="Train a registry model (or a source project's recipe) on MNIST. The best model by validation "
        "accuracy is saved as best_model_<stamp>.pth while training, the last as final_model_<stamp>.pth, "
        "with training_history.png and predictions.png next to them. Options not given come from "
        "--recipe or the --resume checkpoint, else the defaults shown. Ctrl-C stops after the current batch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = tr.add_mutually_exclusive_group()
    what.add_argument("--recipe", choices=list(RECIPES), help="a source project's model and hyperparameters")
    what.add_argument("--resume", metavar="CHECKPOINT", help="continue training from a checkpoint")
    tr.add_argument("--model", choices=list_models(), help="registry model (required without --recipe/--resume)")
    tr.add_argument("--option", metavar="KEY=VALUE", type=_parse_option, action="append",
                    help="model option, e.g. hidden=128 (repeatable)")
    tr.add_argument("--epochs", type=_positive, help="epochs to train [10; 1 under MNISTLIB_QUICK]")
    tr.add_argument("--batch-size", type=_positive, help="training batch size [128]")
    tr.add_argument("--lr", type=_learning_rate, help="learning rate (max_lr for onecycle) [1e-3]")
    tr.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer [adam]; sgd uses momentum 0.9")
    tr.add_argument("--scheduler", choices=SCHEDULERS, help="learning-rate schedule [none]")
    tr.add_argument("--augment", choices=list_augmentations(), help="training augmentation [none]")
    tr.add_argument("--target-accuracy", type=_fraction, metavar="ACC",
                    help="stop at the first epoch whose validation accuracy reaches ACC (0.99 or 99)")
    tr.add_argument("--seed", type=int, help="random seed [0]")
    tr.add_argument("--device", help="cpu, cuda, cuda:1 or mps [auto: cuda > mps > cpu]")
    tr.add_argument("--subset", type=_positive, help="train on this many images only (quick runs)")
    tr.add_argument("--checkpoint-dir", metavar="DIR", help=f"where to save checkpoints [${CHECKPOINTS_ENV} "
                    "or checkpoints/]")
    tr.add_argument("--figures", metavar="DIR", help="where to write the two PNGs [the checkpoint folder]")
    tr.add_argument("--no-figures", action="store_true", help="skip training_history.png and predictions.png")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m mnistlib", description="MNIST lessons: data, training and prediction."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="manage the MNIST files in the data root")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    imp = data_sub.add_parser(
        "import",
        help="copy the four MNIST IDX files (plain or .gz) from a folder into the data root",
        description=f"Validate and copy MNIST IDX files into the data root "
        f"(${DATA_ENV}, now {data_root()}). Nothing is written unless all four are valid.",
    )
    imp.add_argument("source", help="folder holding train-images-idx3-ubyte[.gz] and the others")
    imp.add_argument("--root", default=None, help=f"data root to import into (default: ${DATA_ENV})")
    imp.set_defaults(func=_data_import)

    _add_train(sub)
    add_export_command(sub)

    ev = sub.add_parser("evaluate", help="test accuracy (overall and per digit) of a checkpoint",
                        description="Score a checkpoint on the 10,000 MNIST test images: accuracy, loss, "
                        "and accuracy per digit.")
    ev.add_argument("checkpoint", help="a .pth file written by train")
    ev.add_argument("--device", help="cpu, cuda or mps [cpu]")
    ev.add_argument("--batch-size", type=_positive, default=1000, help="evaluation batch size [1000]")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="predict the digit in image files with a checkpoint",
                        description="Predict the handwritten digit in each image (PNG, JPEG…; dark ink on "
                        "light paper or light on dark): it is cropped, scaled to 20 px and centred like MNIST.")
    pr.add_argument("checkpoint", help="a .pth file written by train")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    pr.add_argument("--top", type=_positive, default=3, help="also show the runners-up, up to this many digits")
    pr.add_argument("--threshold", type=_probability, default=0.6, metavar="P",
                    help="below this top probability the answer is 'not sure' [0.6]")
    pr.set_defaults(func=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    tolerant_output()  # file names that are not UTF-8 print escaped
    try:
        args = build_parser().parse_args(argv)  # imports torch: Ctrl-C may come here already
        startup_done()  # from here a Ctrl-C stops the command cleanly (python -m mnistlib made it quiet till now)
        return args.func(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the last resort for a file problem no command foresaw: still one line
        print(f"error: {_os_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
