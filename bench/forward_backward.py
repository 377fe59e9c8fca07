"""Plain Python PyTorch: one forward+backward of a model's network to its
deepest default layer (the InceptionV3 trunk to mixed5 unless `--model`
names another) at SIZE x SIZE on the CPU, with the same .safetensors file
dreamfarm loads: the network of bench/dream_recipe.py (BatchNorm folded,
channels_last; `--naive` for neither). Prints the median seconds as JSON.

    .venv/bin/python bench/forward_backward.py WEIGHTS [SIZE] [RUNS] [--naive] [--model NAME]
Run by `cargo bench -p dreamfarm-worker --bench forward_backward`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dream_recipe import trunk  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("weights")
ap.add_argument("size", nargs="?", type=int, default=512)
ap.add_argument("runs", nargs="?", type=int, default=7)
ap.add_argument("--naive", action="store_true")
ap.add_argument("--model", default="inception-v3")
args = ap.parse_args()
weights, size, runs, naive = args.weights, args.size, args.runs, args.naive
net, _ = trunk(weights, naive, torch.device("cpu"), args.model)
torch.manual_seed(0)
x0 = torch.rand(1, 3, size, size)


def step():
    x = x0.clone().requires_grad_(True)
    net(x)[-1].square().mean().backward()
    return x.grad


for _ in range(2):
    step()
times = []
for _ in range(runs):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "runs": times, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "naive": naive, "model": args.model}))
