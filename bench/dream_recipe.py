"""Plain Python PyTorch implementation of dreamfarm's default recipe, for the
side-by-side render bench: the InceptionV3 trunk from the same .safetensors
file, objective mean(mixed3^2) + mean(mixed5^2), 4 octaves x 1.4 with the
detail carried between octaves, 1024-pixel tiles with a 64-pixel context
margin and a 32-pixel cross-fade band, a jittered window (up to 32 pixels)
per step, g/std(g), step 0.01, clipping to [0, 1]; frames fed back through
an 8-bit PNG after a 1.02x zoom about the centre. `--model mobilenet-v2` or
`--model googlenet` runs the same recipe on that model's default layers
(torchvision's network, cut after them).

It is written the way a PyTorch user who knows the library would write it
(torch ops on tensors, no dreamfarm code): BatchNorm folded into the
convolutions and the network in `channels_last`, the two things that
measurably speed up a CNN's forward and backward on CPU and GPU without
leaving plain PyTorch. `--naive` runs the same recipe without them (the
unfolded NCHW network), to show what they are worth. `--device cuda` runs
all of it on the GPU (convolutions in IEEE f32 as dreamfarm's f32 runs
them, unless `--tf32`: PyTorch's default; `--no-cudnn` leaves cuDNN out;
`--deterministic` restricts cuDNN to its deterministic algorithms, as
dreamfarm does, to show what that costs).
Prints JSON:
{"frame_s": [...], "median_s": ..., "threads": ..., ...}.

    .venv/bin/python bench/dream_recipe.py --weights W --input assets/astronaut.png \
        --size 512x512 --frames 3 --out /tmp/py-frames
Run by `cargo bench -p dreamfarm-coordinator --bench render_frame`.
"""
import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import load_file

TILE, MARGIN, BAND, JITTER, STEP = 1024, 64, 32, 32, 0.01


def fold_batchnorm(net):
    """Folds every inference BatchNorm into the convolution before it (each
    model's conv+BN pair: torchvision's BasicConv2d in the Inceptions,
    Conv2dNormActivation and the inverted residual's last pair in
    MobileNetV2)."""
    for m in list(net.modules()):
        if isinstance(getattr(m, "conv", None), torch.nn.Conv2d) and isinstance(getattr(m, "bn", None),
                                                                             torch.nn.BatchNorm2d):
            m.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = torch.nn.Identity()
        elif isinstance(m, torch.nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], torch.nn.Conv2d) and isinstance(m[i + 1], torch.nn.BatchNorm2d):
                    m[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(m[i], m[i + 1])
                    m[i + 1] = torch.nn.Identity()


def stages(model, net):
    """The network cut after its deepest dreamed layer, as the stages whose
    outputs are the model's default layers (dreamfarm's names), the input
    scaling dreamfarm's preprocessing does, and the smallest image side."""
    if model == "inception-v3":
        head = torch.nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
                                   net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b, net.Mixed_5c,
                                   net.Mixed_5d, net.Mixed_6a)
        return [head, torch.nn.Sequential(net.Mixed_6b, net.Mixed_6c)], SYMMETRIC, 75
    if model == "mobilenet-v2":
        return [net.features[:11]], IMAGENET, 32
    # googlenet, to inception4c
    return [torch.nn.Sequential(net.conv1, net.maxpool1, net.conv2, net.conv3, net.maxpool2, net.inception3a,
                                net.inception3b, net.maxpool3, net.inception4a, net.inception4b,
                                net.inception4c)], SYMMETRIC, 32


SYMMETRIC = (torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.5, 0.5, 0.5]))
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
MODELS = {
    "inception-v3": lambda: torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False),
    "mobilenet-v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                                       init_weights=False),
}


def trunk(weights, naive, device, model="inception-v3"):
    """`model`'s network from the .safetensors file dreamfarm loads, cut after
    its default layers; returns (forward: image in 0..1 -> the default
    layers' activations, the smallest image side)."""
    net = MODELS[model]().eval()
    missing, unexpected = net.load_state_dict(load_file(weights), strict=False)
    assert not unexpected, unexpected
    net = net.to(device)
    if not naive:
        fold_batchnorm(net)
        net = net.to(memory_format=torch.channels_last)
    for p in net.parameters():
        p.requires_grad_(False)
    parts, (mean, std), min_side = stages(model, net)
    mean, std = mean.to(device)[:, None, None], std.to(device)[:, None, None]
    layout = torch.contiguous_format if naive else torch.channels_last

    def forward(x):
        outs, y = [], ((x - mean) / std).contiguous(memory_format=layout)
        for part in parts:
            y = part(y)
            outs.append(y)
        return outs
    return forward, min_side


def gradient(net, x):
    x = x.detach().requires_grad_(True)
    sum(a.square().mean() for a in net(x)).backward()
    return x.grad


def cells(length):
    n = max(1, math.ceil(length / TILE))
    return [(i * length // n, (i + 1) * length // n) for i in range(n)]


def ramp(coords, lo, hi, band, before, after):
    w = torch.ones_like(coords)
    if band == 0:
        return w * (coords >= lo) * (coords < hi) if (before or after) else w
    if before:
        w = w * ((coords - (lo - band)) / (2 * band)).clamp(0, 1)
    if after:
        w = w * (((hi + band) - coords) / (2 * band)).clamp(0, 1)
    return w


def dream_octave(net, image, iterations, rng):
    """All iterations of one octave, tile by tile, cross-faded back."""
    _, _, h, w = image.shape
    ys, xs = cells(h), cells(w)
    tiled = len(xs) > 1 or len(ys) > 1
    band = min([BAND] + [(b - a) // 2 for a, b in xs + ys]) if tiled else 0
    shifts = [(int(rng.integers(-JITTER, JITTER + 1)), int(rng.integers(-JITTER, JITTER + 1))) for _ in range(iterations)]
    total = torch.zeros_like(image)
    for r, (y0, y1) in enumerate(ys):
        for c, (x0, x1) in enumerate(xs):
            iy0, iy1 = max(0, y0 - MARGIN), min(h, y1 + MARGIN)
            ix0, ix1 = max(0, x0 - MARGIN), min(w, x1 + MARGIN)
            buf = F.pad(image[:, :, iy0:iy1, ix0:ix1], (JITTER,) * 4, mode="reflect")
            before = buf.clone()
            th, tw = iy1 - iy0, ix1 - ix0
            for dy, dx in shifts:
                win = buf[:, :, JITTER + dy:JITTER + dy + th, JITTER + dx:JITTER + dx + tw]
                g = gradient(net, win)
                win += STEP * g / (g.std() + 1e-8)
                win.clamp_(0, 1)
            change = (buf - before)[:, :, JITTER:JITTER + th, JITTER:JITTER + tw]
            oy0, oy1 = max(0, y0 - band), min(h, y1 + band)
            ox0, ox1 = max(0, x0 - band), min(w, x1 + band)
            wy = ramp(torch.arange(oy0, oy1, device=image.device) + 0.5, y0, y1, band, r > 0, r < len(ys) - 1)
            wx = ramp(torch.arange(ox0, ox1, device=image.device) + 0.5, x0, x1, band, c > 0, c < len(xs) - 1)
            total[:, :, oy0:oy1, ox0:ox1] += (wy[:, None] * wx[None, :]) * \
                change[:, :, oy0 - iy0:oy1 - iy0, ox0 - ix0:ox1 - ix0]
    return (image + total).clamp(0, 1)


def resize(x, h, w):
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)


def dream_frame(net, min_side, frame, octaves, iterations, rng):
    _, _, h, w = frame.shape
    sizes = [(round(h / 1.4 ** o), round(w / 1.4 ** o)) for o in reversed(range(octaves))]
    sizes = [s for s in sizes if min(s) >= min_side or s == (h, w)]
    detail = torch.zeros(1, 3, *sizes[0], device=frame.device)
    for oh, ow in sizes:
        base = resize(frame, oh, ow)
        image = (base + resize(detail, oh, ow)).clamp(0, 1)
        image = dream_octave(net, image, iterations, rng)
        detail = image - base
    return image


def zoom(x, factor):
    theta = torch.tensor([[[1 / factor, 0, 0], [0, 1 / factor, 0]]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp(0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--model", default="inception-v3", choices=sorted(MODELS),
                    help="dreamfarm's model name; the objective is its default layers")
    ap.add_argument("--input", required=True)
    ap.add_argument("--size", default="512x512", help="WIDTHxHEIGHT")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--octaves", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--naive", action="store_true", help="no BatchNorm folding, NCHW (the slow way)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--tf32", action="store_true", help="CUDA convolutions in TF32 (PyTorch's default)")
    ap.add_argument("--no-cudnn", action="store_true",
                    help="CUDA convolutions without cuDNN (PyTorch's own kernels): whether cuDNN's choice of "
                         "algorithms is what sets a CUDA step apart from the CPU's")
    ap.add_argument("--deterministic", action="store_true",
                    help="cuDNN's deterministic algorithms only, as dreamfarm's CUDA runs use: what repeatable "
                         "frames cost against cuDNN's default choice")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.enabled = not args.no_cudnn
    torch.backends.cudnn.deterministic = args.deterministic
    net, min_side = trunk(args.weights, args.naive, device, args.model)
    rgb = Image.open(args.input).convert("RGB").resize((w, h), Image.BICUBIC)
    frame = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous().to(device)
    rng = np.random.default_rng(0)
    times = []
    # Each PNG is saved on a thread of its own while the next frame dreams
    # (Pillow releases the GIL while it compresses), as dreamfarm writes its
    # frames: in line, the save was 0.43 s of a 1080p frame and 1.67 s of a
    # 4K one, a large part of a GPU's frame.
    saver, saving = ThreadPoolExecutor(max_workers=1), None
    for n in range(args.frames):
        t = time.perf_counter()
        if n > 0:
            frame = zoom(frame, 1.02)
        out = dream_frame(net, min_side, frame, args.octaves, args.iterations, rng)
        u8 = (out[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        if saving is not None:
            saving.result()
        saving = saver.submit(Image.fromarray(u8).save, os.path.join(args.out, f"frame_{n:05}.png"))
        frame = torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous().to(device)
        times.append(time.perf_counter() - t)
    if saving is not None:
        saving.result()
    print(json.dumps({"frame_s": times, "median_s": statistics.median(times), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "size": [w, h], "model": args.model,
                      "naive": args.naive, "device": args.device, "tf32": args.tf32, "cudnn": not args.no_cudnn,
                      "deterministic": args.deterministic}))


if __name__ == "__main__":
    main()
