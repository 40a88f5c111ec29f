"""Train a small network on scikit-learn's digits data set (real data shipped with the package)
on the CPU, with a :class:`~colabtui_remote.Monitor`: the example behind ``colabtui demo``.

    python -m colabtui_remote.examples.digits --port 0 --checkpoint-dir /tmp/digits --steps 3000

It prints the ``colabtui connect ...`` line, trains, honours save and stop from the laptop, and
resumes from ``--checkpoint-dir`` when started again. Needs torch and scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
import time

from colabtui_remote import Monitor
from colabtui_remote.checkpoint.errors import CheckpointError
from colabtui_remote.transport.mailbox import serve as mailbox_serve

BATCH_SIZE = 64
EVAL_EVERY = 100
"""Steps between evaluations of accuracy on the held-out 20 %."""


def load_digits_data():
    """The 1,797 8x8 digit images scikit-learn ships (UCI optical digits), as (data, target):
    float arrays of shape (1797, 64) with values 0–16, and int labels of shape (1797,).

    Reads the file inside the installed scikit-learn package directly: importing
    ``sklearn.datasets`` costs seconds per process, and the demo starts three.

    Raises:
        ImportError: scikit-learn (or NumPy) is not installed.
    """
    import importlib.util
    import os

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'sklearn'")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):  # a layout we do not know: take the public, slower way
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_digits",
        description="Train an MLP on scikit-learn's digits (8x8 images, 10 classes) on the CPU, "
                    "watched and controlled by colabtui.",
        epilog="Example: python remote/examples/train_digits.py --port 8765 --checkpoint-dir "
               "/tmp/digits --steps 3000 --lr 1e-3 --label 'digits lr=1e-3'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765,
                   help="TCP port; 0 picks a free one, -1 serves no HTTP (default 8765)")
    p.add_argument("--mailbox", default=None, metavar="DIR",
                   help="also serve through this mailbox: a folder (e.g. on a mounted Drive) or "
                        "gdrive://FOLDER_ID/path through the Drive API")
    p.add_argument("--mailbox-interval", type=float, default=5.0, metavar="S",
                   help="seconds between mailbox rounds (default 5)")
    p.add_argument("--token", default=None, help="bearer token (default: a random one, printed)")
    p.add_argument("--checkpoint-dir", required=True,
                   help="where checkpoints go, and resume from: a folder, or "
                        "gdrive://FOLDER_ID/path (written locally, then uploaded and verified)")
    p.add_argument("--local-dir", default=None, metavar="DIR",
                   help="the runtime's own disk: where gdrive:// checkpoints are written first, "
                        "and where saves go while a mounted --checkpoint-dir is unreachable "
                        "(default: $COLABTUI_LOCAL_CHECKPOINTS/<run>, /content/colabtui-"
                        "checkpoints/<run> on Colab)")
    p.add_argument("--steps", type=int, default=3000, help="total training steps (default 3000)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--label", default=None, help="name shown in colabtui (default: the run)")
    p.add_argument("--run", default=None, help="run name (default: digits-lr<LR>)")
    p.add_argument("--autosave-every", type=float, default=600.0,
                   help="seconds between automatic checkpoints; 0 turns them off (default 600)")
    p.add_argument("--step-delay", type=float, default=0.0,
                   help="seconds to sleep after each step, to make a live demo last (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first session (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port < 0 and not args.mailbox and not mailbox_serve.from_environment():
        print("train_digits: --port -1 (no HTTP) needs --mailbox DIR (or $COLABTUI_MAILBOX, "
              "as `colabtui launch` sets)", file=sys.stderr)
        return 2
    if args.steps < 1:
        print("train_digits: --steps must be at least 1", file=sys.stderr)
        return 2
    try:
        import torch

        data, target = load_digits_data()
    except ImportError as exc:
        print(f"train_digits: this example needs torch and scikit-learn ({exc}); "
              "pip install 'colabtui[demo]'", file=sys.stderr)
        return 2

    torch.set_num_threads(1)  # several demo sessions share a laptop's cores
    torch.manual_seed(args.seed)
    x = torch.tensor(data, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    n_train = int(0.8 * len(x))
    x_train, y_train = x[order[:n_train]], y[order[:n_train]]
    x_val, y_val = x[order[n_train:]], y[order[n_train:]]

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9995)
    loss_fn = torch.nn.CrossEntropyLoss()

    run = args.run or f"digits-lr{args.lr:g}"
    mon = None
    try:  # what the user gave can be wrong: say so in one line, not a traceback
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run)
        mon.track(model=model, optimizer=optimizer, scheduler=scheduler)
        mon.resume()  # before serving: a run that cannot resume is not announced
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)
        if args.mailbox:
            mon.serve_mailbox(args.mailbox, interval_s=args.mailbox_interval)
    except (OSError, CheckpointError, ImportError, ValueError) as exc:
        if mon is not None:
            mon.close()
        print(f"train_digits: {exc}", file=sys.stderr)
        return 2
    try:
        for step in mon.steps(args.steps):
            idx = torch.randint(0, n_train, (BATCH_SIZE,))  # global RNG: resumes exactly
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
            mon.log(loss=loss.detach(), lr=scheduler.get_last_lr()[0])
            mon.epoch = (step + 1) * BATCH_SIZE // n_train
            if (step + 1) % EVAL_EVERY == 0:
                with torch.no_grad():
                    acc = (model(x_val).argmax(1) == y_val).float().mean().item()
                mon.log(val_acc=acc)
            if args.step_delay:
                time.sleep(args.step_delay)
    finally:
        mon.close()
    print(f"train_digits: {mon.state} at step {mon.step}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
