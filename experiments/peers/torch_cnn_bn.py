"""A plain PyTorch eager peer of cifarlab's cnn_bn training, for timing per epoch on the same CPU.

The same model (three [Conv-BN-ELU x2, MaxPool, Dropout] blocks, Dense 64, BN, ELU,
Dropout 0.3; 420,842 parameters), the published recipe's batch 64 and Nadam (lr
0.0025), flip and shift drawn per image but applied to whole batches, bfloat16
autocast, channels_last, 2 threads. It needs only torch and numpy:

    python experiments/peers/torch_cnn_bn.py --data ../shared/data/cifar10-subset --epochs 6 --out torch.json

and is meant to run back to back with cifarlab on the same data::

    python -m cifarlab model=cnn_bn optimizer=nadam optimizer.lr=0.0025 augmentation=shift_flip_rotate \\
        dataset=cifar10 dataset.data_dir=../shared/data/cifar10-subset trainer.epochs=6 trainer.batch_size=64

(cifarlab logs ``images_per_second`` for every epoch). Not part of the package or its tests.
PyTorch counts 419,818 parameters: BatchNorm's running statistics are buffers there,
weights in Keras (2 x 512 channels), so the two models are the same 420,842.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def load_subset(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training batches of the python-layout CIFAR-10 folder, as NCHW uint8 and int labels."""
    images, labels = [], []
    for path in sorted((folder / "cifar-10-batches-py").glob("data_batch_*")):
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def block(cin: int, cout: int, rate: float) -> nn.Sequential:
    def conv(a: int, b: int) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b, eps=1e-3, momentum=0.01), nn.ELU()]

    return nn.Sequential(*conv(cin, cout), *conv(cout, cout), nn.MaxPool2d(2), nn.Dropout(rate))


def cnn_bn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        block(3, 32, 0.2), block(32, 64, 0.2), block(64, 128, 0.3),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 64), nn.BatchNorm1d(64, eps=1e-3, momentum=0.01), nn.ELU(),
        nn.Dropout(0.3), nn.Linear(64, num_classes),
    )  # fmt: skip


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontal flip per image, and a shift of up to 3 pixels (10%) per batch, edge-padded."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(-3, 4, (2,), generator=generator))
    x = nn.functional.pad(x, (3, 3, 3, 3), mode="replicate")
    return x[:, :, 3 + dy : 35 + dy, 3 + dx : 35 + dx]


def train(
    images: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int, bfloat16: bool = True
) -> list[float]:
    """Train; return each epoch's images per second."""
    model = cnn_bn().to(memory_format=torch.channels_last)
    optimizer = torch.optim.NAdam(model.parameters(), lr=0.0025, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        start, seen = time.perf_counter(), 0
        model.train()
        for first in range(0, len(order) - batch_size + 1, batch_size):
            index = order[first : first + batch_size]
            x = augment(x_all[index].float().div_(255), generator).contiguous(
                memory_format=torch.channels_last
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                loss = loss_fn(model(x), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
        rates.append(seen / (time.perf_counter() - start))
        print(f"epoch {epoch + 1}/{epochs}: {rates[-1]:.0f} images/s (loss {loss.item():.3f})", flush=True)
    return rates


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the cifar10-subset folder")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_subset(args.data)
    rates = train(images, labels, args.epochs, args.batch_size, bfloat16=args.precision == "bfloat16")
    result = {
        "framework": f"torch {torch.__version__}",
        "cpu": cpu_model(),
        "threads": args.threads,
        "precision": args.precision,
        "images": len(labels),
        "images_per_second": rates,
        "median_images_per_second": statistics.median(rates[1:] or rates),  # the first epoch warms up
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
