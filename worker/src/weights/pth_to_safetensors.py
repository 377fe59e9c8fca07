# Converts a torchvision state dict (.pth, legacy or zip format) into
# .safetensors, dropping BatchNorm's num_batches_tracked counters.
# Run by dreamfarm with the project's virtualenv Python: pth_to_safetensors.py IN OUT
import sys

import torch
from safetensors.torch import save_file

state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
tensors = {
    k: v.contiguous()
    for k, v in state.items()
    if not k.endswith("num_batches_tracked")
}
save_file(tensors, sys.argv[2], metadata={"source": sys.argv[1].rsplit("/", 1)[-1]})
