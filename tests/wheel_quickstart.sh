#!/usr/bin/env bash
# The README quick start against the built wheel, installed (not editable) into a fresh venv outside
# the checkout, run from a folder outside the checkout, without --model: the wheel must carry the
# default model (caduceus_cli/_models/) and py.typed, and no top-level package but caduceus_cli.
#
#   tests/wheel_quickstart.sh            (make wheel-test; PY=python to build with, TORCH=torch pin)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$repo/.venv/bin/python}
TORCH=${TORCH:-torch==2.13.0}
model=caduceus-ps-hg-chr20-d128-n4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/caduceus-wheel-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tmp=$(cd "$tmp" && pwd -P)  # the real path, as the CLI reports it
unset PYTHONPATH CADUCEUS_DEFAULT_MODEL
SECONDS=0
step() { printf '[wheel-test %3ds] %s\n' "$SECONDS" "$*"; }

step "build the wheel"
# setuptools keeps files of moved or deleted modules in build/lib and would ship them: start clean
rm -rf "$repo/build"
"$PY" -m pip wheel -q --no-deps -w "$tmp/dist" "$repo"
wheels=("$tmp"/dist/caduceus_cli-*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "expected one caduceus_cli wheel in $tmp/dist" >&2; exit 1; }
whl=${wheels[0]}
"$PY" - "$whl" "$model" <<'EOF'
import os, sys, zipfile
whl, model = sys.argv[1:]
names = zipfile.ZipFile(whl).namelist()
need = [f"caduceus_cli/_models/{model}/config.json", f"caduceus_cli/_models/{model}/model.safetensors",
        "caduceus_cli/py.typed", "caduceus_cli/__init__.py"]
missing = [n for n in need if n not in names]
tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")})
if missing or tops != ["caduceus_cli"]:
    sys.exit(f"bad wheel {whl}: missing {missing}, top-level entries {tops}")
print(f"  {os.path.basename(whl)}: {os.path.getsize(whl) / 1e6:.2f} MB, {len(names)} files, model and py.typed inside")
EOF

step "fresh venv: $TORCH, then the wheel"
# no ensurepip: the build venv's (newer) pip installs into it, from the usual indexes and pip's cache
"$PY" -m venv --without-pip "$tmp/venv"
vpy=$tmp/venv/bin/python
"$PY" -m pip --python "$vpy" install -qq "$TORCH"
"$PY" -m pip --python "$vpy" install -qq "$whl"
"$PY" -m pip --python "$vpy" check

step "quick start from a folder outside the checkout, default model"
mkdir "$tmp/work"
cp "$repo"/examples/chr22_slice.fa.gz{,.fai,.gzi} "$tmp/work/"
cd "$tmp/work"
used=$("$tmp/venv/bin/caduceus" info | awk -F'\t' '$1 == "source" {print $2}')
case $used in
    "$tmp"/venv/lib/python*/site-packages/caduceus_cli/_models/$model) echo "  default model: $used" ;;
    *) echo "the default model is not the wheel's copy: '$used'" >&2; exit 1 ;;
esac
"$tmp/venv/bin/caduceus" score-vcf "$repo/examples/chr22_example.vcf.gz" --ref chr22_slice.fa.gz -o scored.vcf.gz
[[ -s scored.vcf.gz && -s scored.vcf.gz.tbi ]] || { echo "scored.vcf.gz or its .tbi is missing" >&2; exit 1; }
"$vpy" - <<'EOF'
import pysam
with pysam.VariantFile("scored.vcf.gz") as vcf:
    assert "CAD_LLR" in vcf.header.info, "no CAD_LLR in the header"
    records = list(vcf)
scored = [r for r in records if "CAD_LLR" in r.info]
if len(records) != 50 or len(scored) != 50:
    raise SystemExit(f"scored.vcf.gz: {len(records)} records, {len(scored)} with CAD_LLR; expected 50 and 50")
print(f"  scored.vcf.gz: {len(records)} records, all with CAD_LLR; .tbi present")
EOF
step "ok"
cd /
step "clean up"
