#!/usr/bin/env python3
"""Reads Lamina's layered documents back with independent readers and checks them against the
image's manifest and PNG layers.

    check_documents.py [--gimp] IMAGE_DIR [IMAGE_DIR ...]

For each image folder (holding manifest.json): the PSD (or PSB) is opened with psd-tools and
the OpenRaster file with Python's zipfile and ElementTree, following the OpenRaster spec (not
Lamina's writer). Checked: layer count, names, order, offsets, every layer's pixels against
the PNG layer (when PNG was written), and the documents' merged images against the layers'
recomposition. With --gimp, GIMP (a real editor, in batch mode) also opens each PSD, lists
its layers and flattens it; the flattened PNG must match the recomposition. Prints one JSON
object per image on stdout; exits 1 with a one-line reason on
the first check that fails.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image
from psd_tools import PSDImage


def fail(where, why):
    print(f"{where}: {why}", file=sys.stderr)
    sys.exit(1)


def place(rgba, x, y, w, h):
    """A layer's pixels on a transparent canvas of w x h at offset (x, y)."""
    canvas = np.zeros((h, w, 4), dtype=np.uint8)
    canvas[y:y + rgba.shape[0], x:x + rgba.shape[1]] = rgba
    return canvas


def recomposite(layers):
    """Straight-alpha 'over' of 8-bit layers, bottom first: premultiplied RGB and alpha."""
    h, w = layers[0].shape[:2]
    rgb = np.zeros((h, w, 3))
    alpha = np.zeros((h, w))
    for layer in layers:
        a = layer[..., 3:4] / 255.0
        rgb = layer[..., :3] / 255.0 * a + rgb * (1 - a)
        alpha = a[..., 0] + alpha * (1 - a[..., 0])
    return rgb, alpha


def compare_composite(where, got, rgb, alpha, tol):
    """got: straight RGBA (or RGB) uint8; compares premultiplied colour and alpha."""
    got = got.astype(np.float64) / 255.0
    got_a = got[..., 3] if got.shape[-1] == 4 else np.ones(got.shape[:2])
    got_rgb = got[..., :3] * got_a[..., None]
    worst = max(np.abs(got_rgb - rgb).max(), np.abs(got_a - alpha).max()) * 255
    if worst > tol:
        fail(where, f"the composite differs from the layers' recomposition by {worst:.2f}/255")
    return float(worst)


def rendering(manifest):
    """What was rendered from the layers: `render`, or `params` in manifests from before it."""
    return manifest.get("render") or manifest["params"]


def check_psd(folder, manifest, layers, rgb, alpha):
    name = next((f for f in manifest["files"] if f in ("layers.psd", "layers.psb")), None)
    if name is None:
        fail(folder, "no layers.psd or layers.psb in the manifest's files")
    path = os.path.join(folder, name)
    psd = PSDImage.open(path)
    w, h = manifest["canvas"]["width"], manifest["canvas"]["height"]
    if (psd.width, psd.height) != (w, h):
        fail(path, f"canvas {psd.width}x{psd.height}, manifest says {w}x{h}")
    if psd.version != (2 if name.endswith(".psb") else 1):
        fail(path, f"version {psd.version} for a .{name[-3:]} file")
    want_channels = 4 if manifest["input"]["has_alpha"] else 3
    if psd.channels != want_channels:
        fail(path, f"{psd.channels} channels in the header, expected {want_channels}")
    got = list(psd)  # bottom first
    if len(got) != len(manifest["layers"]):
        fail(path, f"{len(got)} layers, manifest has {len(manifest['layers'])}")
    crop = rendering(manifest).get("crop_layers", False)
    records = psd._record.layer_and_mask_information.layer_info
    for i, (layer, info, rec, data) in enumerate(zip(got, manifest["layers"], records.layer_records, records.channel_image_data)):
        where = f"{path} layer {i}"
        if layer.name != info["name"]:
            fail(where, f"named {layer.name!r}, manifest says {info['name']!r}")
        if layer.kind != "pixel" or not layer.visible or layer.opacity != 255 or layer.blend_mode.name != "NORMAL":
            fail(where, f"not a visible normal pixel layer at full opacity ({layer.kind}, {layer.blend_mode})")
        box = info["bbox"]
        want = (box["x"], box["y"], box["width"], box["height"]) if crop else (0, 0, w, h)
        if (layer.left, layer.top, layer.width, layer.height) != want:
            fail(where, f"at {(layer.left, layer.top, layer.width, layer.height)}, expected {want}")
        # psd-tools' own decoder, channel by channel (its image API stops at 30000 pixels
        # a side even for PSB).
        lw, lh = rec.right - rec.left, rec.bottom - rec.top
        planes = {int(c.id): np.frombuffer(d.get_data(lw, lh, 8, psd.version), np.uint8).reshape(lh, lw) for c, d in zip(rec.channel_info, data)}
        if sorted(planes) != [-1, 0, 1, 2]:
            fail(where, f"channels {sorted(planes)}, expected transparency, R, G, B")
        pixels = np.stack([planes[0], planes[1], planes[2], planes[-1]], axis=-1)
        placed = place(pixels, layer.left, layer.top, w, h)
        if layers is not None and not np.array_equal(placed, layers[i]):
            fail(where, "pixels differ from the PNG layer")
        if max(w, h) <= 30000:
            shown = place(np.asarray(layer.topil().convert("RGBA")), layer.left, layer.top, w, h)
            if not np.array_equal(shown[..., 3], placed[..., 3]):
                fail(where, "psd-tools' image of the layer differs from its channels")
    header = psd._record.header
    channels = [np.frombuffer(c, np.uint8).reshape(h, w) / 255.0 for c in psd._record.image_data.get_data(header)]
    if len(channels) != want_channels:
        fail(path, f"{len(channels)} merged channels, expected {want_channels}")
    merged_alpha = channels[3] if want_channels == 4 else np.ones((h, w))
    # Photoshop's merged colours are matted over white: stored = premultiplied + (1 - alpha).
    merged_rgb = np.stack(channels[:3], axis=-1) - (1 - merged_alpha[..., None])
    worst_merged = max(np.abs(merged_rgb - rgb).max(), np.abs(merged_alpha - alpha).max()) * 255
    if worst_merged > 1.0:
        fail(f"{path} merged image", f"differs from the layers' recomposition by {worst_merged:.2f}/255")
    report = {"file": name, "layers": len(got), "merged_max_error": float(worst_merged)}
    if max(w, h) <= 30000:
        report["topil_max_error"] = compare_composite(f"{path} merged image as psd-tools shows it", np.asarray(psd.topil()), rgb, alpha, tol=2.0)
        report["rendered_max_error"] = compare_composite(f"{path} layers rendered by psd-tools", np.asarray(psd.composite().convert("RGBA")), rgb, alpha, tol=2.0)
    return report


def check_ora(folder, manifest, layers, rgb, alpha):
    path = os.path.join(folder, "layers.ora")
    raw = open(path, "rb").read()
    # The spec's magic: the first member is "mimetype", stored, so its content sits at 38.
    if raw[:4] != b"PK\x03\x04" or raw[30:38] != b"mimetype" or raw[38:54] != b"image/openraster":
        fail(path, "mimetype is not the first, stored member")
    archive = zipfile.ZipFile(io.BytesIO(raw))
    infos = archive.infolist()
    if infos[0].filename != "mimetype" or infos[0].compress_type != zipfile.ZIP_STORED:
        fail(path, "mimetype is not the first, stored member")
    if archive.testzip() is not None:
        fail(path, "a member's CRC is wrong")
    names = set(archive.namelist())
    for needed in ("stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"):
        if needed not in names:
            fail(path, f"no {needed}")
    root = ET.fromstring(archive.read("stack.xml"))
    w, h = manifest["canvas"]["width"], manifest["canvas"]["height"]
    if root.tag != "image" or (int(root.get("w")), int(root.get("h"))) != (w, h):
        fail(path, "stack.xml's image is not the canvas")
    stack = root.find("stack")
    elements = list(stack) if stack is not None else []
    bottom_first = list(reversed(elements))  # the first child is the top layer
    if len(bottom_first) != len(manifest["layers"]):
        fail(path, f"{len(bottom_first)} layers, manifest has {len(manifest['layers'])}")
    ora_layers = []
    for i, (el, info) in enumerate(zip(bottom_first, manifest["layers"])):
        where = f"{path} layer {i}"
        if el.tag != "layer" or el.get("name") != info["name"]:
            fail(where, f"named {el.get('name')!r}, manifest says {info['name']!r}")
        if el.get("composite-op", "svg:src-over") != "svg:src-over" or float(el.get("opacity", "1")) != 1.0:
            fail(where, "not src-over at full opacity")
        x, y = int(el.get("x", "0")), int(el.get("y", "0"))
        png = Image.open(io.BytesIO(archive.read(el.get("src"))))
        if png.mode != "RGBA":
            fail(where, f"mode {png.mode}")
        placed = place(np.asarray(png), x, y, w, h)
        if layers is not None and not np.array_equal(placed, layers[i]):
            fail(where, "pixels differ from the PNG layer")
        ora_layers.append(placed)
    o_rgb, o_alpha = recomposite(ora_layers)
    if np.abs(o_rgb - rgb).max() > 1e-9 or np.abs(o_alpha - alpha).max() > 1e-9:
        fail(path, "its layers recomposite differently from the PNG layers")
    merged = np.asarray(Image.open(io.BytesIO(archive.read("mergedimage.png"))).convert("RGBA"))
    worst = compare_composite(f"{path} mergedimage.png", merged, rgb, alpha, tol=1.0)
    thumb = Image.open(io.BytesIO(archive.read("Thumbnails/thumbnail.png")))
    if max(thumb.size) > 256:
        fail(path, f"thumbnail is {thumb.size}")
    return {"file": "layers.ora", "layers": len(bottom_first), "merged_max_error": worst, "first_member": infos[0].filename}


GIMP_SCRIPT = """
(let* ((image (car (gimp-file-load RUN-NONINTERACTIVE "{psd}" "{psd}")))
       (layers (gimp-image-get-layers image))
       (ids (cadr layers)))
  (gimp-message-set-handler CONSOLE)
  (let loop ((i 0))
    (if (< i (car layers))
        (begin (gimp-message (string-append "lamina-layer: " (car (gimp-item-get-name (vector-ref ids i)))))
               (loop (+ i 1)))))
  (let ((merged (car (gimp-image-merge-visible-layers image CLIP-TO-IMAGE))))
    (gimp-layer-resize-to-image-size merged)
    (file-png-save-defaults RUN-NONINTERACTIVE image merged "{png}" "{png}"))
  (gimp-image-delete image))
"""


def check_gimp(folder, manifest, rgb, alpha):
    """GIMP opens the PSD: its layers (listed top first) and its flattened image."""
    path = os.path.abspath(os.path.join(folder, "layers.psd"))
    with tempfile.TemporaryDirectory() as tmp:
        flat = os.path.join(tmp, "flat.png")
        script = GIMP_SCRIPT.format(psd=path.replace('"', '\\"'), png=flat)
        run = subprocess.run(["gimp-console", "-i", "-d", "-f", "-b", script, "-b", "(gimp-quit 0)"],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": tmp})
        said = run.stdout + run.stderr
        names = [line.split("lamina-layer: ", 1)[1].strip() for line in said.splitlines() if "lamina-layer: " in line]
        if run.returncode != 0 or not os.path.exists(flat):
            fail(path, f"GIMP could not open and flatten it: {said.strip()[-300:]}")
        want = [layer["name"] for layer in reversed(manifest["layers"])]
        if names != want:
            fail(path, f"GIMP shows layers {names}, expected {want}")
        worst = compare_composite(f"{path} flattened by GIMP", np.asarray(Image.open(flat).convert("RGBA")), rgb, alpha, tol=2.0)
    return {"layers": len(names), "flattened_max_error": worst}


def check(folder, gimp=False):
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    w, h = manifest["canvas"]["width"], manifest["canvas"]["height"]
    files = set(manifest["files"])
    for f in files:
        if not os.path.isfile(os.path.join(folder, f)):
            fail(folder, f"the manifest lists {f}, which is not there")
    formats = rendering(manifest).get("formats", ["png"])
    crop = rendering(manifest).get("crop_layers", False)
    layers = None
    if "png" in formats:
        layers = []
        for info in manifest["layers"]:
            png = Image.open(os.path.join(folder, info["file"]))
            box = info["bbox"]
            if crop:
                if png.size != (box["width"], box["height"]):
                    fail(info["file"], f"cropped to {png.size}, bbox is {box}")
                layers.append(place(np.asarray(png.convert("RGBA")), box["x"], box["y"], w, h))
            else:
                layers.append(np.asarray(png.convert("RGBA")))
    report = {"image": folder}
    if layers is None:
        # No PNGs: the OpenRaster layers (checked against the spec) are the reference.
        if "ora" not in formats:
            fail(folder, "neither PNG nor OpenRaster layers to compare the PSD with")
        archive = zipfile.ZipFile(os.path.join(folder, "layers.ora"))
        root = ET.fromstring(archive.read("stack.xml"))
        layers = [
            place(np.asarray(Image.open(io.BytesIO(archive.read(el.get("src")))).convert("RGBA")), int(el.get("x")), int(el.get("y")), w, h)
            for el in reversed(list(root.find("stack")))
        ]
    rgb, alpha = recomposite(layers)
    if "psd" in formats:
        report["psd"] = check_psd(folder, manifest, layers, rgb, alpha)
    if "ora" in formats:
        report["ora"] = check_ora(folder, manifest, layers, rgb, alpha)
    if gimp and "layers.psd" in manifest["files"]:
        report["gimp"] = check_gimp(folder, manifest, rgb, alpha)
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    gimp = "--gimp" in args
    folders = [a for a in args if a != "--gimp"]
    if not folders:
        fail("check_documents.py", "usage: check_documents.py [--gimp] IMAGE_DIR [IMAGE_DIR ...]")
    for folder in folders:
        print(json.dumps(check(folder, gimp)))
