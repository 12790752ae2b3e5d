#!/usr/bin/env python3
"""jpeg_quality.py -- was this CIFAR binary file decoded from JPEG, and at what quality?

A copy of CIFAR-10 made from JPEG files (docs/training.md: the project's copy is one) carries the
JPEG quantisation in its pixels: the 8x8 DCT coefficients of each image's luminance sit near
multiples of the quantisation table's steps (JPEG works on 8x8 blocks of YCbCr; 32x32 images are
4x4 whole blocks).  This script finds the libjpeg quality (1-100, the standard luminance table scaled
as libjpeg and PIL scale it) whose steps fit the 15 lowest-frequency AC coefficients best (among
the coefficients it does not quantise to 0), and says
whether colour was subsampled (with 4:2:0 or 4:2:2 the chroma planes change less inside a pair of
columns than across pairs).  The originals (downscaled photographs, never JPEG) fit no table: their
best fit is no better than the uniform 0.25.

Usage: /usr/bin/python3 scripts/jpeg_quality.py FILE.bin [--images N] [--json]
       (FILE: a CIFAR-10 data_batch_*.bin / test_batch.bin, or CIFAR-100 train.bin / test.bin)
Prints the best quality (and every quality with the same fitted table), its lattice misfit (0 =
every coefficient on a multiple of its step, 0.25 = no lattice), the misfit of the next best table,
and the chroma pair ratio (about 1 at full colour resolution, lower when subsampled).
"""
import argparse
import json
import sys

import numpy as np

# The JPEG standard's luminance quantisation table (Annex K), row-major, and the zig-zag order.
LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
ZIGZAG = sorted(((u, v) for u in range(8) for v in range(8)),
                key=lambda t: (t[0] + t[1], t[0] if (t[0] + t[1]) % 2 else t[1]))
AC = ZIGZAG[1:16]  # the 15 lowest-frequency AC coefficients: the best populated
LATTICE = 0.15  # a misfit below this is a JPEG lattice: halfway between the clean lattices measured
                # (0.04-0.10, tests/ref_cli.py and the project's copy) and none (0.25)
N = 8
_n = np.arange(N)
DCT = np.sqrt(2.0 / N) * np.cos(np.pi * (2 * _n[None, :] + 1) * _n[:, None] / (2 * N))
DCT[0] /= np.sqrt(2.0)


def luma_table(q):
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table (force_baseline) for quality q."""
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((LUMA * scale + 50) // 100, 1, 255)


def read_cifar(path, limit):
    raw = np.fromfile(path, np.uint8)
    for rec, lab in ((3073, 1), (3074, 2)):
        if raw.size % rec == 0 and raw.size:
            x = raw.reshape(-1, rec)[:limit, lab:].reshape(-1, 3, 32, 32).astype(np.float64)
            return x
    sys.exit(f"jpeg_quality.py: {path}: {raw.size} bytes is not a whole number of CIFAR records "
             "(3073 bytes for CIFAR-10, 3074 for CIFAR-100). HINT: pass a data_batch_*.bin, "
             "test_batch.bin, train.bin or test.bin file.")


def ycbcr(x):
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def block_dct(plane):
    """(n, 32, 32) -> (n*16, 8, 8) DCT-II of each 8x8 block (of plane - 128, as JPEG does)."""
    blk = (plane - 128.0).reshape(-1, 4, 8, 4, 8).transpose(0, 1, 3, 2, 4).reshape(-1, 8, 8)
    return np.einsum('ui,bij,vj->buv', DCT, blk, DCT)


def misfit(coef, table):
    """Mean distance of the coefficients to the nearest multiple of their step, in steps, over the
    coefficients at least half a step from 0 (the ones the table does not quantise to 0: with them a
    step too large, which rounds nearly everything to 0, would fit anything).  A coefficient position
    counts only where enough blocks have such values; nan with fewer than 5 such positions."""
    d = []
    for u, v in AC:
        c, t = coef[:, u, v], table[u, v]
        sel = np.abs(c) >= t / 2
        if sel.sum() >= max(50, 0.02 * c.size):
            d.append(np.abs(c[sel] / t - np.round(c[sel] / t)).mean())
    return float(np.mean(d)) if len(d) >= 5 else float('nan')


def estimate(x):
    y, cb, cr = ycbcr(x)
    coef = block_dct(y)
    fits = {q: f for q in range(1, 101) if not np.isnan(f := misfit(coef, luma_table(q)))}
    best = min(fits.values())
    key = [u * 8 + v for u, v in AC]
    tab = luma_table(min(fits, key=fits.get)).flat[key]
    same = [q for q in range(1, 101) if np.array_equal(luma_table(q).flat[key], tab)]
    others = [f for q, f in fits.items() if q not in same]
    other = min(others) if others else float('nan')
    dc = [np.abs(np.diff(c, axis=2)) for c in (cb, cr)]
    pair = float(np.mean([d[:, :, 0::2].mean() / d[:, :, 1::2].mean() for d in dc]))
    jpeg = best < LATTICE
    return {"jpeg": bool(jpeg), "quality_lo": same[0] if jpeg else None, "quality_hi": same[-1] if jpeg else None,
            "misfit": best, "next_misfit": other, "chroma_pair_ratio": pair}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('file')
    ap.add_argument('--images', type=int, default=4000, help='images to read (default 4000)')
    ap.add_argument('--json', action='store_true', help='print one JSON object')
    a = ap.parse_args()
    if a.images < 1:
        sys.exit("jpeg_quality.py: --images must be at least 1")
    try:
        x = read_cifar(a.file, a.images)
    except OSError as e:
        sys.exit(f"jpeg_quality.py: {a.file}: {e.strerror}. HINT: pass a CIFAR binary file")
    r = estimate(x)
    r["file"] = a.file
    r["images"] = int(x.shape[0])
    if a.json:
        print(json.dumps(r))
        return
    print(f"{a.file}: {r['images']} images")
    if r["jpeg"]:
        print(f"  decoded from JPEG: best-fitting libjpeg quality {r['quality_lo']}-{r['quality_hi']} "
              f"(lattice misfit {r['misfit']:.3f}, next table {r['next_misfit']:.3f}; 0.25 = no lattice)")
    else:
        print(f"  no JPEG lattice found (best misfit {r['misfit']:.3f}; 0.25 = no lattice)")
    print(f"  chroma pair ratio {r['chroma_pair_ratio']:.3f} "
          f"({'colour subsampled' if r['chroma_pair_ratio'] < 0.9 else 'full colour resolution'})")


if __name__ == '__main__':
    main()
