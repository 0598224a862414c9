"""Turns the PP-OCR text detector (ONNX, from the rapidocr wheel) into TorchScript for
Lamina's libtorch, and proves the two agree.

    python convert.py DETECTOR.onnx OUT.pt

The graph is converted with onnx2torch after one rewrite: its two 2x2 convolutions and its
max-pool pad with `auto_pad = SAME_UPPER`, which onnx2torch does not take. For stride 1 that
padding does not depend on the input's size (one pixel after, none before, per axis), so it
is written out as explicit pads. The converted module is traced once and checked against
onnxruntime at three input sizes (the detector takes any multiple of 32): the largest
difference of the probability maps must be under 1e-4, or nothing is written.
"""
import sys

import numpy as np
import onnx
import onnxruntime
import torch
from onnx2torch import convert

TOLERANCE = 1e-4
SIZES = [(1, 3, 640, 640), (1, 3, 480, 736), (2, 3, 320, 960)]


def explicit_pads(model):
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        pad = attrs.get("auto_pad")
        if pad is None or pad.s in (b"NOTSET", b"VALID"):
            continue
        kernel = list(onnx.helper.get_attribute_value(attrs["kernel_shape"]))
        strides = list(onnx.helper.get_attribute_value(attrs["strides"])) if "strides" in attrs else [1] * len(kernel)
        if pad.s != b"SAME_UPPER" or any(s != 1 for s in strides):
            sys.exit(f"{node.name}: auto_pad {pad.s.decode()} with strides {strides} is not handled")
        before = [(k - 1) // 2 for k in kernel]
        after = [k - 1 - b for k, b in zip(kernel, before)]
        node.attribute.remove(pad)
        node.attribute.append(onnx.helper.make_attribute("pads", before + after))
    return model


def main(source, target):
    model = explicit_pads(onnx.load(source))
    net = convert(model).eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(*SIZES[0]), check_trace=False)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for size in SIZES:
        x = rng.random(size, dtype=np.float32)
        with torch.no_grad():
            ours = traced(torch.from_numpy(x)).numpy()
        theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
        worst = float(np.abs(ours - theirs).max())
        print(f"text detector {size}: largest difference from onnxruntime {worst:.2e}")
        if ours.shape != theirs.shape or not worst < TOLERANCE:
            sys.exit(f"the TorchScript detector disagrees with onnxruntime at {size}: {worst:.2e}")
    traced.save(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
