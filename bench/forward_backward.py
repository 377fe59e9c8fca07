"""Plain Python PyTorch: one forward+backward of the InceptionV3 trunk to
mixed5 at SIZE x SIZE on the CPU, with the same .safetensors file dreamfarm
loads: the network of bench/dream_recipe.py (BatchNorm folded,
channels_last; `--naive` for neither). Prints the median seconds as JSON.

    .venv/bin/python bench/forward_backward.py WEIGHTS [SIZE] [RUNS] [--naive]
Run by `cargo bench -p dreamfarm-worker --bench forward_backward`.
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dream_recipe import trunk  # noqa: E402

naive = "--naive" in sys.argv
args = [a for a in sys.argv[1:] if a != "--naive"]
weights, size, runs = args[0], int(args[1]) if len(args) > 1 else 512, int(args[2]) if len(args) > 2 else 7
net = trunk(weights, naive)
torch.manual_seed(0)
x0 = torch.rand(1, 3, size, size)


def step():
    x = x0.clone().requires_grad_(True)
    net(x)[1].square().mean().backward()
    return x.grad


for _ in range(2):
    step()
times = []
for _ in range(runs):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "runs": times, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "naive": naive}))
