#!/usr/bin/env python3
"""torch_train.py -- train a model's PyTorch twin on exactly the data stream `xbar train` uses.

`xbar train` draws its data order and augmentation from its own random streams (xoshiro256**, seeded
from (--seed, stream name) through splitmix64, as in src/core/rng.c): at the start of every epoch a
Fisher-Yates shuffle of 0..N-1 from the "shuffle" stream, then for each image of a batch, in order,
crop top (0..8), crop left (0..8) and flip (0/1) from the "augment" stream, then with --cutout N the
cutout centre row and column (0..31 each); each image is padded with 4 zero pixels, cropped, mirrored,
scaled by 1/255, normalised per channel in float32, and has the N x N square from centre - N//2 (clipped
at the border) set to 0 (src/data/cifar.c).  This module replays those streams in Python, so the twin (tools/torch_zoo.py)
sees the same batches, learning rates (xb_schedule_lr of src/nn/optim.c) and optimizer (torch.optim,
whose semantics xbar follows) as xbar.  With --swa-epochs K, the K epochs after the schedule run at the
constant --swa-lr, torch.optim.swa_utils.AveragedModel averages the weights at the end of each, and
update_bn recomputes its batchnorm statistics over the training images in order, unaugmented, in
batches of --batch (src/nn/train.c's swa_eval).  From the same weights, the two then train alike up to float32
rounding, which the chaotic dynamics of training amplify over steps as they amplify torch's own float32
vs float64 difference.  tests/ref_train.py holds xbar to this; docs/training.md uses it for a whole
epoch.  Models with dropout are refused (xbar's dropout masks come from a third stream, not replayed).

Library use (tools/ on sys.path):
    import torch_train as tt
    images, labels = tt.load_cifar10_train(DIR)
    stream = tt.XbarStream(images, labels, seed=1, batch=128)
    x, y = stream.next()              # float32 N x 3 x 32 x 32 and int64 N: xbar's next training batch
    losses = tt.train(model, stream, steps, epochs=164, schedule="step", lr=0.1, weight_decay=1e-4)

CLI (flags and defaults as `xbar train`'s):
    /usr/bin/python3 tools/torch_train.py --model resnet20 --init W.safetensors --data DIR --steps K \\
        [--epochs E] [--batch B] [--optimizer sgd|adam|adamw] [--lr X] [--momentum M] [--nesterov] \\
        [--schedule cosine|step|onecycle|const] [--weight-decay X] [--label-smoothing E] [--seed S] \\
        [--train-limit N] [--cutout N] [--swa-epochs K --swa-lr X] [--double] [--threads T] [--every N] \\
        --out OUT.safetensors [--swa-out SWA.safetensors]
prints the loss every N steps and a JSON line {"steps", "epochs": [{"epoch", "train_loss", "images"}]}
(per-epoch mean losses, as `xbar train --json` prints them), then writes the state_dict to OUT.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_np  # noqa: E402
import torch_zoo as tz  # noqa: E402

_M64 = (1 << 64) - 1
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # src/data/cifar.c
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
PAD = 4


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


def _fnv1a(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001B3) & _M64
    return h


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & _M64


class XbarRng:
    """xb_rng: xoshiro256** seeded as xb_rng_seed(seed, stream)."""

    def __init__(self, seed, stream):
        _, a = _splitmix64(seed & _M64)
        x = a ^ _fnv1a(stream)
        self.s = []
        for _ in range(4):
            x, z = _splitmix64(x)
            self.s.append(z)

    def u64(self):
        s = self.s
        r = (_rotl((s[1] * 5) & _M64, 7) * 9) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return r

    def below(self, n):
        """xb_rng_below: uniform in 0..n-1 by rejection of the partial top bucket."""
        lim = _M64 - _M64 % n
        while True:
            x = self.u64()
            if x < lim:
                return x % n


def load_cifar10_train(data_dir):
    """data_batch_1..5.bin -> (uint8 N x 3 x 32 x 32, int64 N), in file order as xbar loads them."""
    recs = []
    for i in range(1, 6):
        p = os.path.join(data_dir, f"data_batch_{i}.bin")
        raw = np.fromfile(p, np.uint8)
        if raw.size % 3073:
            raise ValueError(f"{p}: {raw.size} bytes is not a whole number of 3073-byte CIFAR-10 records")
        recs.append(raw.reshape(-1, 3073))
    raw = np.concatenate(recs)
    return raw[:, 1:].reshape(-1, 3, 32, 32).copy(), raw[:, 0].astype(np.int64)


class XbarStream:
    """xbar train's batches: per-epoch shuffle, per-image crop/flip (and cutout) draws, float32
    normalisation."""

    def __init__(self, images, labels, seed=1, batch=128, augment=True, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                 cutout=0):
        self.images, self.labels, self.batch, self.augment = images, labels, batch, augment
        self.cutout = cutout
        self.n = len(labels)
        self.rs, self.ra = XbarRng(seed, "shuffle"), XbarRng(seed, "augment")
        self.pos, self.epoch, self.perm = 0, 0, None
        self.mean = np.array(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.array(std, np.float32).reshape(1, -1, 1, 1)

    def steps_per_epoch(self):
        return (self.n + self.batch - 1) // self.batch

    def next(self):
        """The next batch and whether it ends an epoch."""
        if self.pos == 0:
            perm = list(range(self.n))
            for i in range(self.n - 1, 0, -1):
                j = self.rs.below(i + 1)
                perm[i], perm[j] = perm[j], perm[i]
            self.perm = np.array(perm, np.int64)
        nb = min(self.batch, self.n - self.pos)
        idx = self.perm[self.pos:self.pos + nb]
        src = self.images[idx]
        c, h, w = src.shape[1:]
        mask = np.ones((nb, 1, h, w), np.float32)
        if self.augment or self.cutout:
            padded = np.zeros((nb, c, h + 2 * PAD, w + 2 * PAD), np.uint8)
            padded[:, :, PAD:PAD + h, PAD:PAD + w] = src
            out = np.empty_like(src)
            for k in range(nb):
                dy, dx, flip = PAD, PAD, 0
                if self.augment:
                    dy, dx, flip = self.ra.below(2 * PAD + 1), self.ra.below(2 * PAD + 1), self.ra.below(2)
                crop = padded[k, :, dy:dy + h, dx:dx + w]
                out[k] = crop[:, :, ::-1] if flip else crop
                if self.cutout:  # DeVries & Taylor's Cutout: a square around a uniform centre, clipped
                    cy, cx = self.ra.below(h), self.ra.below(w)
                    y0, x0 = cy - self.cutout // 2, cx - self.cutout // 2
                    mask[k, :, max(y0, 0):max(y0 + self.cutout, 0), max(x0, 0):max(x0 + self.cutout, 0)] = 0
            src = out
        x = (src.astype(np.float32) / np.float32(255) - self.mean) / self.std * mask
        self.pos += nb
        end = self.pos >= self.n
        if end:
            self.pos, self.epoch = 0, self.epoch + 1
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx]), end


def schedule_lr(kind, base, step, total, per_epoch):
    """xb_schedule_lr of src/nn/optim.c."""
    total = max(total, 1)
    step = min(step, total)
    if kind == "const":
        return base
    if kind == "cosine":
        return 0.5 * base * (1.0 + math.cos(math.pi * step / total))
    if kind == "step":
        per_epoch = max(per_epoch, 1)
        epochs, e = (total + per_epoch - 1) // per_epoch, step // per_epoch
        lr = base
        if e >= epochs // 2:
            lr *= 0.1
        if e >= (epochs * 3) // 4:
            lr *= 0.1
        return lr
    if kind == "onecycle":
        up, s = 0.3 * total - 1.0, float(step)
        lo = base / 25.0
        fin = lo / 1e4
        if s <= up:
            return lo + (base - lo) * 0.5 * (1.0 - math.cos(math.pi * s / (up if up > 0 else 1)))
        down = total - 1.0 - up
        t = min((s - up) / (down if down > 0 else 1), 1.0)
        return fin + (base - fin) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule '{kind}' (cosine|step|onecycle|const)")


def plain_batches(images, batch, mean=CIFAR10_MEAN, std=CIFAR10_STD, dtype=torch.float32):
    """The images in order, unaugmented and normalised as xbar does, in batches: xb_update_bn's pass."""
    mean = np.array(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.array(std, np.float32).reshape(1, -1, 1, 1)
    for i in range(0, len(images), batch):
        x = (images[i:i + batch].astype(np.float32) / np.float32(255) - mean) / std
        yield torch.from_numpy(x).to(dtype)


def make_optimizer(model, kind, lr, momentum=0.9, nesterov=False, weight_decay=5e-4):
    """torch.optim with xbar's defaults; one group, weight decay on every parameter (xbar's default)."""
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{kind}' (sgd|adam|adamw)")


def train(model, stream, steps, epochs=1, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
          weight_decay=5e-4, schedule="cosine", label_smoothing=0.0, dtype=torch.float32, every=0, swa=None,
          swa_lr=0.01):
    """`steps` optimizer steps as xbar train takes them; returns [(epoch, mean loss, images)] per epoch
    segment (the last one may be partial), as `xbar train --json` reports them.  Steps past `epochs`
    epochs run at swa_lr, and with swa (a torch.optim.swa_utils.AveragedModel of model) each epoch that
    ends there adds the weights to it, as xbar train --swa-epochs does."""
    if any(isinstance(mod, torch.nn.Dropout) and mod.p > 0 for mod in model.modules()):
        raise ValueError("the model has dropout: xbar's dropout masks are not replayed here")
    spe = stream.steps_per_epoch()
    total = epochs * spe
    opt = make_optimizer(model, optimizer, lr, momentum, nesterov, weight_decay)
    model.train()
    out, loss_sum, seen = [], 0.0, 0
    for step in range(steps):
        x, y, end = stream.next()
        lr_k = schedule_lr(schedule, lr, step, total, spe) if step < total else swa_lr
        for g in opt.param_groups:
            g["lr"] = lr_k
        loss = F.cross_entropy(model(x.to(dtype)), y, label_smoothing=label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        seen += len(y)
        if every and (step % every == 0 or step == steps - 1):
            print(f"step {step + 1}: lr {lr_k:.6g} loss {loss.item():.6f} (epoch mean {loss_sum / seen:.6f})",
                  flush=True)
        if end and stream.epoch > epochs and swa is not None:
            swa.update_parameters(model)
        if end or step == steps - 1:
            out.append((stream.epoch if end else stream.epoch + 1, loss_sum / seen, seen))
            loss_sum, seen = 0.0, 0
    return out


def _main(argv):
    ap = argparse.ArgumentParser(description="train the PyTorch twin on xbar train's own data stream")
    ap.add_argument("--model", default="resnet20", help="zoo name (tools/torch_zoo.py) or a model .cfg")
    ap.add_argument("--init", required=True, help="starting weights (safetensors; give xbar train the same "
                                                  "with --weights)")
    ap.add_argument("--data", default=os.environ.get("XBAR_DATA", "../shared/data/cifar10"))
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "step", "onecycle", "const"])
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--cutout", type=int, default=0)
    ap.add_argument("--swa-epochs", type=int, default=0, help="SWA epochs after the --epochs of the schedule")
    ap.add_argument("--swa-lr", type=float, default=0.01)
    ap.add_argument("--swa-out", help="where the SWA weights go (with --swa-epochs)")
    ap.add_argument("--double", action="store_true", help="train in float64 (the exact reference)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=0, help="print the loss every N steps")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = tz.build(a.model) if a.model in tz.NAMES else tz.CfgNet(a.model)
    model = tz.load_weights(model, a.init)
    dtype = torch.float64 if a.double else torch.float32
    model.to(dtype)
    images, labels = load_cifar10_train(a.data)
    if 0 < a.train_limit < len(labels):
        images, labels = images[:a.train_limit], labels[:a.train_limit]
    stream = XbarStream(images, labels, a.seed, a.batch, augment=not a.no_augment, cutout=a.cutout)
    swa = torch.optim.swa_utils.AveragedModel(model) if a.swa_epochs else None
    segs = train(model, stream, a.steps, a.epochs, a.optimizer, a.lr, a.momentum, a.nesterov, a.weight_decay,
                 a.schedule, a.label_smoothing, dtype, a.every, swa, a.swa_lr)
    print(json.dumps({"steps": a.steps, "epochs": [{"epoch": e, "train_loss": l, "images": n} for e, l, n in segs]}))
    save_state(model, a.out)
    if swa is not None and swa.n_averaged.item() > 0 and a.swa_out:
        torch.optim.swa_utils.update_bn(plain_batches(images, a.batch, dtype=dtype), swa)
        save_state(swa.module, a.swa_out)
    return 0


def save_state(model, path):
    st_np.save(path, {k: v.detach().cpu().numpy() if v.dtype == torch.int64 else
                      v.detach().cpu().to(torch.float32).numpy() for k, v in model.state_dict().items()})


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
