"""Turns the PP-OCR text detector or recogniser (ONNX, from the rapidocr wheel) into
TorchScript for Lamina's libtorch, and proves the two agree.

    python convert.py detector DETECTOR.onnx OUT.pt
    python convert.py recogniser RECOGNISER.onnx OUT.pt   (also writes OUT.txt)

Each graph is converted with onnx2torch after rewrites:
- Convolutions and max-pools that pad with `auto_pad = SAME_UPPER`, which onnx2torch does not
  take: for stride 1 that padding does not depend on the input's size (one pixel after, none
  before, per axis), so it is written out as explicit pads.
- The recogniser's reshapes whose target shape the graph computes from its input's shape:
  a trace would keep the numbers of the one width it saw. Each is written as a constant
  shape with 0 (keep that dimension) and -1 (what is left), found by running the graph at two
  batch sizes and widths and seeing which dimensions move.
The converted module is traced once and checked against onnxruntime at several input sizes
(the detector takes any multiple of 32, the recogniser any width at 48 pixels high): the
largest difference of the outputs must be under 1e-4, or nothing is written. The
recogniser's characters, one a line, come from the ONNX file's metadata (`character`) and
go to OUT.txt: class 0 is CTC's blank, then these, then a space.
"""
import sys

import numpy as np
import onnx
import onnxruntime
import torch
from onnx2torch import convert

TOLERANCE = 1e-4
SIZES = {
    "detector": [(1, 3, 640, 640), (1, 3, 480, 736), (2, 3, 320, 960)],
    "recogniser": [(1, 3, 48, 320), (1, 3, 48, 160), (3, 3, 48, 648), (2, 3, 48, 40)],
}


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


def static_reshapes(model, source):
    """Writes each reshape whose target the graph computes as a constant with 0 and -1."""
    constant = {i.name for i in model.graph.initializer}
    moving = [n for n in model.graph.node if n.op_type == "Reshape" and n.input[1] not in constant]
    if not moving:
        return model
    probe = onnx.load(source)
    for n in moving:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(n.input[1], onnx.TensorProto.INT64, None))
        probe.graph.output.append(onnx.helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(3)
    runs = [dict(zip(names, session.run(None, {"x": rng.random((b, 3, 48, w), dtype=np.float32)}))) for b, w in ((1, 320), (2, 160))]
    for n in moving:
        (a, b), (ia, ib) = [r[n.input[1]] for r in runs], [r[n.input[0]].shape for r in runs]
        shape = []
        for d, (x, y) in enumerate(zip(a, b)):
            if x == y:
                shape.append(int(x))
            elif d < len(ia) and (ia[d], ib[d]) == (x, y):
                shape.append(0)
            else:
                shape.append(-1)
        if shape.count(-1) > 1:
            sys.exit(f"{n.name}: reshape to {list(a)} moves in more than one dimension that is not its input's")
        name = f"{n.name}.static"
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(shape, dtype=np.int64), name))
        n.input[1] = name
    return model


def main(kind, source, target):
    if kind not in SIZES:
        sys.exit(f"convert.py: the first argument is detector or recogniser, not {kind!r}")
    model = explicit_pads(onnx.load(source))
    if kind == "recogniser":
        model = static_reshapes(model, source)
    net = convert(model).eval()
    sizes = SIZES[kind]
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(*sizes[0]), check_trace=False)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for size in sizes:
        x = rng.random(size, dtype=np.float32) * 2 - 1
        with torch.no_grad():
            ours = traced(torch.from_numpy(x)).numpy()
        theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
        worst = float(np.abs(ours - theirs).max())
        print(f"text {kind} {size}: largest difference from onnxruntime {worst:.2e}")
        if ours.shape != theirs.shape or not worst < TOLERANCE:
            sys.exit(f"the TorchScript {kind} disagrees with onnxruntime at {size}: {worst:.2e}")
    if kind == "recogniser":
        chars = next((p.value for p in model.metadata_props if p.key == "character"), None)
        if chars is None:
            sys.exit("the recogniser's ONNX file has no character list in its metadata")
        if len(chars.split("\n")) + 2 != ours.shape[-1]:
            sys.exit(f"{len(chars.split(chr(10)))} characters do not fit the recogniser's {ours.shape[-1]} classes")
        with open(target.removesuffix(".part").removesuffix(".pt") + ".txt", "w", encoding="utf-8", newline="") as out:
            out.write(chars)
    traced.save(target)


if __name__ == "__main__":
    main(*sys.argv[1:4])
