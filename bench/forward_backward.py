"""Plain Python PyTorch: one forward+backward of the InceptionV3 trunk to
mixed5 at SIZE x SIZE on the CPU, with the same .safetensors file dreamfarm
loads. torchvision's Inception3 modules have the same parameter names; the
trunk is cut after Mixed_6c (= mixed5). Prints the median seconds as JSON.

    .venv/bin/python bench/forward_backward.py WEIGHTS [SIZE] [RUNS]
Run by `cargo bench -p dreamfarm-worker --bench forward_backward`.
"""
import json
import statistics
import sys
import time

import torch
import torchvision
from safetensors.torch import load_file

weights, size, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 512, int(sys.argv[3]) if len(sys.argv) > 3 else 7
net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
missing, unexpected = net.load_state_dict(load_file(weights), strict=False)
assert not unexpected, unexpected
assert all(k.endswith("bn.weight") or not k.startswith(("Conv2d", "Mixed_5", "Mixed_6a", "Mixed_6b", "Mixed_6c")) for k in missing), missing
for p in net.parameters():
    p.requires_grad_(False)
trunk = torch.nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1, net.Conv2d_3b_1x1,
                            net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a,
                            net.Mixed_6b, net.Mixed_6c)
torch.manual_seed(0)
x0 = torch.rand(1, 3, size, size) * 2 - 1


def step():
    x = x0.clone().requires_grad_(True)
    trunk(x).square().mean().backward()
    return x.grad


for _ in range(2):
    step()
times = []
for _ in range(runs):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "runs": times, "threads": torch.get_num_threads(),
                  "torch": torch.__version__}))
