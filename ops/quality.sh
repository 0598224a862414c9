#!/usr/bin/env bash
# Scores Lamina's decompositions of the layered ground-truth set (eval/layered-set) with
# `lamina eval` (LayerD's metric) and prints the tables QUALITY.md holds: one per setting, the
# average over the set at 0 to 5 merge edits.
#
# Usage: ops/quality.sh [OUT_DIR]   (default: a temporary folder; JSON scores are kept there)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh
lamina="${LAMINA_BIN:-target/release/lamina}"
[ -x "$lamina" ] || ops/bootstrap.sh release
out="${1:-$(mktemp -d)}"
export RUST_LOG="${RUST_LOG:-warn}"
mkdir -p "$out"
settings=(
    "fscs:"
    "fscs-layers-auto:--layers auto"
    "fscs-layers-4:--layers 4"
    "objects-small:--model objects-small"
    "objects:--model objects"
    "design:--model design"
)
# Only the settings named in QUALITY_SETTINGS (space-separated), when set.
if [ -n "${QUALITY_SETTINGS:-}" ]; then
    chosen=()
    for setting in "${settings[@]}"; do
        for want in $QUALITY_SETTINGS; do [ "${setting%%:*}" = "$want" ] && chosen+=("$setting"); done
    done
    settings=("${chosen[@]}")
fi
for setting in "${settings[@]}"; do
    name="${setting%%:*}"
    read -r -a options <<< "${setting#*:}"
    "$lamina" run eval/layered-set/inputs "$out/$name" --progress none "${options[@]}" >/dev/null
    "$lamina" eval "$out/$name" eval/layered-set/gt --json "$out/$name.json" >/dev/null
    python3 - "$out/$name.json" "$name" "${setting#*:}" <<'PY'
import json, sys
scores = json.load(open(sys.argv[1]))
print(f"\n### {sys.argv[2]} (`lamina run {sys.argv[3] or '(defaults)'}`), {len(scores['samples'])} images scored\n")
print("| merge edits | avg edits used | images | RGB L1 (lower is better) | alpha soft IoU (higher is better) | cost |")
print("| --- | --- | --- | --- | --- | --- |")
for level in scores["aggregated"]:
    print(f"| {level['max_edits']} | {level['avg_edits']:.2f} | {level['count']} | {level['avg_rgb_l1']:.4f} | {level['avg_alpha_iou']:.4f} | {level['avg_cost']:.4f} |")
# At 0 edits, by background and by content (the set's names: <background>-<content>-...).
groups = {}
for name, levels in scores["samples"].items():
    zero = next(l for l in levels if l["edits"] == 0)
    background, content = name.split("-")[:2]
    for group in (f"background {background}", f"content {content}"):
        groups.setdefault(group, []).append(zero)
print("\nAt 0 edits, by background and by content" + (f" ({len(scores['skipped'])} images not scored: a single predicted layer)" if scores["skipped"] else "") + ":\n")
print("| images | count | RGB L1 | alpha soft IoU |")
print("| --- | --- | --- | --- |")
for group in sorted(groups):
    rows = groups[group]
    l1 = sum(r["rgb_l1"] for r in rows) / len(rows)
    iou = sum(r["alpha_iou"] for r in rows) / len(rows)
    print(f"| {group} | {len(rows)} | {l1:.4f} | {iou:.4f} |")
PY
    # Words read (design): the words the set's README says each input holds, against the
    # words of its text layers' manifests.
    python3 - "$out/$name" eval/layered-set/README.md <<'PY'
import glob, json, os, re, sys
drawn = {}
for line in open(sys.argv[2], encoding="utf-8"):
    m = re.match(r"\| (\S+)\.png \|", line)
    if m:
        texts = re.findall(r'text(?: block)? ((?:"[^"]+"(?: / )?)+)', line)
        drawn[m.group(1)] = [w for t in texts for q in re.findall(r'"([^"]+)"', t) for w in q.split()]
total = found = said = right = 0
for path in glob.glob(os.path.join(sys.argv[1], "**", "manifest.json"), recursive=True):
    key = os.path.splitext(os.path.basename(os.path.dirname(path)))[0]
    if key not in drawn:
        continue
    read = [w for l in json.load(open(path))["layers"] if l.get("text") for w in l["text"].split()]
    total += len(drawn[key]); found += sum(w in read for w in drawn[key])
    said += len(read); right += sum(w in drawn[key] for w in read)
if said:
    print(f"\nWords: {found} of the {total} drawn read exactly ({found / total:.0%}); {right} of the {said} read were drawn ({right / said:.0%}).")
PY
done
echo
echo "scores (per image, LayerD's JSON) are in $out/"
