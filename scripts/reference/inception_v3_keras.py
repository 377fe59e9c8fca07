"""Golden activations of the nsfwjs InceptionV3 trunk, computed by
TensorFlow/Keras itself from the TF.js model in the pinned npm tarball.

Independent of dreamfarm's Rust code: Node.js evaluates the TF.js modules,
NumPy dequantizes, and Keras builds the network from the model's own
topology. Needs `tensorflow-cpu==2.15.1` (not a CI dependency):

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu==2.15.1
    /tmp/tf/bin/python scripts/reference/inception_v3_keras.py \
        ~/.cache/dreamfarm/models/downloads/nsfwjs-4.4.0.tgz tests/golden/inception-v3.safetensors
"""
import base64
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import golden  # noqa: E402

LAYERS = ["mixed0", "mixed1", "mixed2", "mixed3", "mixed4", "mixed5"]
DIR = "package/dist/models/inception_v3/"


def load_module(path):
    out = subprocess.run(["node", "-e", f"process.stdout.write(JSON.stringify(require({json.dumps(path)})))"],
                         check=True, capture_output=True).stdout
    return json.loads(out)


def main(tarball, out):
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        model = load_module(os.path.join(tmp, DIR, "model.min.js"))
        values = {}
        for group in model["weightsManifest"]:
            buf = b"".join(base64.b64decode(load_module(os.path.join(tmp, DIR, p + ".min.js"))) for p in group["paths"])
            offset = 0
            for w in group["weights"]:
                n = int(np.prod(w["shape"]))
                q = w.get("quantization")
                if q:
                    dt = {"uint8": np.uint8, "uint16": np.uint16}[q["dtype"]]
                    raw = np.frombuffer(buf, dt, n, offset)
                    values[w["name"]] = (q["min"] + q["scale"] * raw.astype(np.float64)).astype("f4").reshape(w["shape"])
                    offset += n * np.dtype(dt).itemsize
                else:
                    values[w["name"]] = np.frombuffer(buf, "<f4", n, offset).reshape(w["shape"])
                    offset += 4 * n
            assert offset == len(buf), "manifest and shards disagree"

    config = model["modelTopology"]["model_config"]
    # Keep mixed5 and what it depends on: the fine-tuned head is never built.
    by_name = {layer["name"]: layer for layer in config["config"]["layers"]}
    keep, todo = set(), ["mixed5"]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += [inbound[0] for node in by_name[name]["inbound_nodes"] for inbound in node]
    config["config"]["layers"] = [layer for layer in config["config"]["layers"] if layer["name"] in keep]
    config["config"]["output_layers"] = [["mixed5", 0, 0]]
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "InputLayer":  # any image size, not only 299x299
            layer["config"]["batch_input_shape"] = [None, None, None, 3]
    keras_model = tf.keras.models.model_from_json(json.dumps(config))
    for layer in keras_model.layers:
        if layer.weights:
            layer.set_weights([values[f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"] for w in layer.weights])
    trunk = tf.keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in LAYERS])

    x_nchw = golden.fixed_input((1, 3, 107, 131), seed=3)
    acts = trunk(np.transpose(x_nchw, (0, 2, 3, 1)), training=False)
    arrays = {"input": x_nchw}
    for name, a in zip(LAYERS, acts):
        arrays[name] = np.transpose(a.numpy(), (0, 3, 1, 2))
    golden.save(out, arrays, {"reference": f"tensorflow {tf.__version__} Keras model_from_json of nsfwjs@4.4.0"})
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
