"""pytorch/examples' MNIST training loop (``mnist/main.py``: its ``Net`` with dropout, Adadelta,
``StepLR`` stepped per epoch, a test pass per epoch, nested epoch/batch loops over a shuffled
``DataLoader``) on scikit-learn's digits, instrumented the way the README teaches.

    python remote/examples/mnist_digits.py --epochs 3 --seed 1 --checkpoint-dir DIR \\
        --port 8765 --token T [--workers W] [--label L] [--dump-params FILE]

Stopped from the laptop (or interrupted) and started again with the same ``--checkpoint-dir``,
it resumes exactly: the same batches in the same order, the same dropout, the same learning
rate. ``--dump-params FILE`` writes the final parameters, optimizer state and learning rate
with ``torch.save`` at the end of a run that finished. Needs torch and scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from colabtui_remote import Monitor
from colabtui_remote.examples.digits import load_digits_data
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """pytorch/examples' MNIST ``Net``, sized for 8x8 digits (fc1 takes 64 x 2 x 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(256, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def datasets() -> tuple[TensorDataset, TensorDataset]:
    """Digits as 1x8x8 images scaled to [0, 1]: the first 1,500 to train, the rest to test."""
    data, target = load_digits_data()
    x = torch.tensor(data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(target, dtype=torch.int64)
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


def train(model, loader, optimizer, mon: Monitor, epoch: int, seen: list[int],
          delay: float = 0.0) -> bool:
    """One epoch; True when the laptop stopped the run."""
    model.train()
    for data, target in loader:
        time.sleep(delay)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        seen.append(len(target))
        mon.log(loss=loss.detach())
        if mon.at_step_boundary(mon.step + 1, epoch=epoch):
            return True
    return False


def test(model, loader, mon: Monitor, delay: float = 0.0) -> None:
    time.sleep(delay)
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            loss += F.nll_loss(output, target, reduction="sum").item()
            correct += int(output.argmax(dim=1).eq(target).sum())
    n = len(loader.dataset)
    mon.log(test_loss=loss / n, accuracy=correct / n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mnist_digits", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None)
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader workers (persistent when > 0)")
    p.add_argument("--label", default=None)
    p.add_argument("--dump-params", default=None, metavar="FILE")
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--gamma", type=float, default=0.7)
    p.add_argument("--step-delay", type=float, default=0.0, metavar="S",
                   help="sleep S seconds before each batch and each test pass (to watch it)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train_set, test_set = datasets()
    workers = {"num_workers": args.workers, "persistent_workers": True} if args.workers else {}
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True, **workers)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)

    mon = Monitor(run=f"mnist-digits-s{args.seed}", checkpoint_dir=args.checkpoint_dir,
                  autosave_every=None, label=args.label)
    mon.track(model=model, optimizer=optimizer, scheduler=scheduler, train_loader=train_loader)
    mon.serve(port=args.port, token=args.token)
    seen: list[int] = []  # samples trained per batch, this process
    counts: dict[int, int] = {}
    for epoch in mon.epochs(1, args.epochs + 1):
        before = len(seen)
        stopped = train(model, train_loader, optimizer, mon, epoch, seen, args.step_delay)
        counts[epoch] = sum(seen[before:])
        if stopped:
            break
        test(model, test_loader, mon, args.step_delay)
        scheduler.step()
    mon.finish()  # the last checkpoint; after a stop from the laptop it does nothing
    print(f"mnist_digits: samples per epoch in this process {counts}", flush=True)
    if args.dump_params and mon.finished:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "lr": scheduler.get_last_lr(), "step": mon.step}, args.dump_params)
    mon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
