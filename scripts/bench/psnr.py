#!/usr/bin/env python3
"""PSNR between the newest PNG under each of two output folders (`scripts/bench/cuda.sh`'s
GPU-vs-CPU parity step): `psnr.py LABEL DIR_A DIR_B`. Prints one line; exits 1 when an image is
missing or the sizes differ. Needs numpy and pillow."""

import glob
import os
import sys

import numpy as np
from PIL import Image


def newest_png(folder):
    found = glob.glob(os.path.join(folder, "**", "*.png"), recursive=True)
    return max(found, key=os.path.getmtime) if found else None


def main():
    label, first, second = sys.argv[1:4]
    paths = [newest_png(first), newest_png(second)]
    if None in paths:
        print(f"parity {label}: missing image ({paths})")
        return 1
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in paths)
    if a.shape != b.shape:
        print(f"parity {label}: sizes differ {a.shape} vs {b.shape}")
        return 1
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    print(f"parity {label}: PSNR {psnr:.1f} dB, max |diff| {np.abs(a - b).max():.0f}/255")
    return 0


if __name__ == "__main__":
    sys.exit(main())
