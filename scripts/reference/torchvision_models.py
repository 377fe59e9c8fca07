"""Golden activations from torchvision itself, for dreamfarm's mobilenet-v2
and googlenet, and torchvision's ImageNet top-5 for a public-domain photo.

Run with the project's virtualenv (scripts/setup.sh installs torchvision):

    .venv/bin/python scripts/reference/torchvision_models.py golden \
        ~/.cache/dreamfarm/models/downloads/mobilenet_v2-b0353104.pth tests/golden
    .venv/bin/python scripts/reference/torchvision_models.py googlenet-weights OUT.safetensors

GoogLeNet's ImageNet weights cannot be downloaded here, so its golden values
use random weights drawn by NumPy (PCG64, seed 0: the same on every CPU), which the tests
regenerate with the second command.
"""
import hashlib
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import golden  # noqa: E402

GOOGLENET_LAYERS = ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                    "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"]
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def googlenet_random():
    """torchvision's GoogLeNet with random weights drawn by NumPy's PCG64
    (seed 0), which gives the same numbers on every CPU; torch's own
    vectorised normal sampling differs between CPU generations. Conv and
    linear weights follow torchvision's init (truncated normal, std 0.01)
    but wider (std 0.05) so deep activations do not vanish; BatchNorm gets
    random affine parameters and running statistics."""
    model = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False).eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, t in sorted(model.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                v = rng.uniform(0.5, 1.5, t.shape)
            elif name.endswith(("bn.weight",)):
                v = rng.uniform(0.5, 1.5, t.shape)
            elif t.dim() > 1:
                v = np.clip(rng.normal(0.0, 0.05, t.shape), -0.1, 0.1)
            else:
                v = rng.normal(0.0, 0.05, t.shape)
            t.copy_(torch.from_numpy(v.astype(np.float32)))
    return model


def googlenet_weights(out):
    state = {k: v.contiguous() for k, v in googlenet_random().state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, out)


def capture(model, names, x):
    acts = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.detach().numpy()))
             for n in names]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return acts


def main_golden(pth, outdir):
    mobilenet = torchvision.models.mobilenet_v2()
    mobilenet.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True))
    mobilenet.eval()
    x = golden.fixed_input((1, 3, 96, 112), seed=1) * 2.0  # ImageNet-normalised inputs span about ±2
    arrays = {"input": x, **capture(mobilenet, [f"features.{i}" for i in range(19)], x)}
    golden.save(os.path.join(outdir, "mobilenet-v2.safetensors"), arrays, {"reference": f"torchvision {torchvision.__version__}"})

    # Classification: centre crop and resize once with PIL; the test reads the same PNG.
    photo = Image.open(os.path.join(ROOT, "assets", "chelsea.png")).convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    crop = photo.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    crop_path = os.path.join(outdir, "chelsea-224.png")
    crop.save(crop_path)
    t = torchvision.transforms.functional.to_tensor(Image.open(crop_path).convert("RGB"))
    t = torchvision.transforms.functional.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        logits = mobilenet(t[None])[0]
    top5 = torch.topk(logits, 5).indices.numpy().astype("f4")
    golden.save(os.path.join(outdir, "mobilenet-v2-chelsea.safetensors"), {"top5": top5, "logits": logits.numpy()})
    print("mobilenet-v2 top-5 on chelsea:", top5)

    tmp = os.path.join(outdir, "googlenet-random.tmp.safetensors")
    googlenet_weights(tmp)
    digest = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
    os.remove(tmp)
    x = golden.fixed_input((1, 3, 64, 80), seed=2)
    arrays = {"input": x, **capture(googlenet_random(), GOOGLENET_LAYERS, x)}
    golden.save(os.path.join(outdir, "googlenet.safetensors"), arrays,
                {"reference": f"torchvision {torchvision.__version__}, random init seed 0", "weights_sha256": digest})
    print("googlenet random weights sha256", digest)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"golden": main_golden, "googlenet-weights": googlenet_weights}[cmd](*args)
