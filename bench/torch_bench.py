#!/usr/bin/env python3
"""torch_bench.py -- PyTorch's side of bench/run.py: train or inference images/s of a zoo twin.

    /usr/bin/python3 bench/torch_bench.py MODEL train|infer THREADS BATCH STEPS

Train: SGD(momentum 0.9, weight decay 5e-4) steps on random NCHW batches (the data pipeline is not
timed: xbar's figure includes its augmentation, so this favours PyTorch).  Infer: eval mode, no_grad.
Prints one JSON line: {"images_per_s": ..., "seconds": ...}; peak memory is measured by the caller.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import torch_zoo  # noqa: E402


def main():
    model, mode, threads, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_zoo.build(model)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    warm = 2
    if mode == "train":
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        for i in range(warm + steps):
            if i == warm:
                t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
    else:
        net.eval()
        with torch.no_grad():
            for i in range(warm + steps):
                if i == warm:
                    t0 = time.perf_counter()
                net(x)
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": batch * steps / dt, "seconds": dt}))


if __name__ == "__main__":
    main()
