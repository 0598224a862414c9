"""The peer Lamina is measured against: FSCS as a Python team would run it over a folder.

The reference FSCS inference procedure (Akimoto et al., CVPR 2020) in PyTorch with the same
pretrained weights Lamina embeds (models/fscs/fscs-k7.safetensors, MIT): palette by k-means
(scikit-learn, on a 16384-pixel sample), mask generator, normalise, guided filter, normalise,
residue predictor, residue mean taken off, colours clamped; each of the 7 alpha-add layers
saved as an RGBA PNG with Pillow, in a plain loop over the images (the shape of a Celery task
body, without the broker).

Usage: python fscs_peer.py WEIGHTS IN_DIR OUT_DIR   -> prints "images N seconds S"
"""

import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from sklearn.cluster import KMeans

K = 7


class UNet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()

        def down(i, o):
            return nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False)

        def up(i, o):
            return nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1, bias=False)

        self.conv1, self.bn1 = down(cin, 2 * cin), nn.BatchNorm2d(2 * cin)
        self.conv2, self.bn2 = down(2 * cin, 4 * cin), nn.BatchNorm2d(4 * cin)
        self.conv3, self.bn3 = down(4 * cin, 8 * cin), nn.BatchNorm2d(8 * cin)
        self.deconv1, self.bnde1 = up(8 * cin, 4 * cin), nn.BatchNorm2d(4 * cin)
        self.deconv2, self.bnde2 = up(8 * cin, 2 * cin), nn.BatchNorm2d(2 * cin)
        self.deconv3, self.bnde3 = up(4 * cin, 2 * cin), nn.BatchNorm2d(2 * cin)
        self.conv4, self.bn4 = nn.Conv2d(2 * cin + 3, cin, 3, padding=1), nn.BatchNorm2d(cin)
        self.conv5 = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x, image):
        x1 = self.bn1(F.relu(self.conv1(x)))
        x2 = self.bn2(F.relu(self.conv2(x1)))
        x3 = self.bn3(F.relu(self.conv3(x2)))
        y = torch.cat([self.bnde1(F.relu(self.deconv1(x3))), x2], 1)
        y = torch.cat([self.bnde2(F.relu(self.deconv2(y))), x1], 1)
        y = torch.cat([self.bnde3(F.relu(self.deconv3(y))), image], 1)
        y = self.bn4(F.relu(self.conv4(y)))
        return self.conv5(y)


class Fscs(nn.Module):
    def __init__(self):
        super().__init__()
        self.mask_generator = UNet(3 + 3 * K, K)
        self.residue_predictor = UNet(3 + 4 * K, 3 * K)


def box(x, r):
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_filter(guide, p, r=3, eps=1e-6):
    mean_i, mean_p = box(guide, r), box(p, r)
    cov = box(guide * p, r) - mean_i * mean_p
    var = box(guide * guide, r) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box(a, r) * guide + box(b, r)


def normalise(alpha):
    return alpha / (alpha.sum(1, keepdim=True) + 1e-8)


def palette(pixels, rng):
    flat = pixels.reshape(-1, 3)
    sample = flat[rng.choice(len(flat), size=min(len(flat), 16384), replace=False)]
    km = KMeans(n_clusters=K, n_init=1, random_state=0).fit(sample)
    order = np.argsort(-np.bincount(km.labels_, minlength=K))
    return km.cluster_centers_[order].astype(np.float32)


@torch.no_grad()
def decompose(net, pixels, rng):
    h, w, _ = pixels.shape
    ph, pw = (h + 7) // 8 * 8, (w + 7) // 8 * 8
    image = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    image = F.pad(image, (0, pw - w, 0, ph - h), mode="replicate")
    colours = torch.from_numpy(palette(pixels, rng))
    planes = colours.view(1, K, 3, 1, 1).expand(1, K, 3, ph, pw)
    x = torch.cat([image, planes.reshape(1, 3 * K, ph, pw)], 1)
    alpha = normalise(torch.sigmoid(net.mask_generator(x, image)))
    luma = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    alpha = normalise(guided_filter(luma, alpha)).view(1, K, 1, ph, pw)
    x = torch.cat([image, torch.cat([planes, alpha], 2).reshape(1, 4 * K, ph, pw)], 1)
    residue = torch.tanh(net.residue_predictor(x, image))
    residue = residue - residue.mean((2, 3), keepdim=True)
    colour = (planes + residue.view(1, K, 3, ph, pw)).clamp(0, 1)
    layers = torch.cat([colour, alpha.clamp(0, 1)], 2)[0, :, :, :h, :w]
    return (layers * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main():
    weights, src, dst = sys.argv[1:4]
    net = Fscs()
    missing, unexpected = net.load_state_dict(load_file(weights), strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        sys.exit(f"{weights}: weights do not fit the network: missing {missing}, unexpected {unexpected}")
    net.eval()
    rng = np.random.default_rng(0)
    names = sorted(n for n in os.listdir(src) if n.lower().endswith((".png", ".jpg", ".jpeg")))
    started = time.monotonic()
    for name in names:
        pixels = np.asarray(Image.open(os.path.join(src, name)).convert("RGB"), dtype=np.float32) / 255.0
        layers = decompose(net, pixels, rng)
        out = os.path.join(dst, name)
        os.makedirs(out, exist_ok=True)
        for i, layer in enumerate(layers):
            Image.fromarray(layer, "RGBA").save(os.path.join(out, f"layer-{i:02d}.png"))
    print(f"images {len(names)} seconds {time.monotonic() - started:.3f}")


if __name__ == "__main__":
    main()
