#!/usr/bin/env bash
# Build the git-ignored folders a device call carries (run here, from the repository root):
#   .gpukern/ss/kernels_ss.tar.xz  mamba_ssm from ../shared/gpu-wheels, trimmed to the selective
#                                  scan (its python: selective_scan_interface, triton layer_norm,
#                                  utils; __init__ imports only the scan), ~37 MB
#   .whl/                          pure-python wheels: einops (mamba_ssm needs it), pytest and its
#                                  dependencies; the device image has them now (SKIP_WHL=1 skips them)
# Then: run(carry=[".gpukern/ss", ".whl"], command="source bench/gpu_setup.sh; ...").
set -euo pipefail
wheel=$(ls "${SHARED:-../shared}"/gpu-wheels/mamba_ssm-*.whl | head -1)
tmp=$(mktemp -d)
unzip -q "$wheel" -d "$tmp/w"
t="$tmp/trim"
mkdir -p "$t/mamba_ssm/ops/triton" "$t/mamba_ssm/utils"
cp "$tmp"/w/selective_scan_cuda*.so "$t/"
cp "$tmp"/w/mamba_ssm/ops/__init__.py "$tmp"/w/mamba_ssm/ops/selective_scan_interface.py "$t/mamba_ssm/ops/"
cp "$tmp"/w/mamba_ssm/ops/triton/__init__.py "$tmp"/w/mamba_ssm/ops/triton/layer_norm.py "$t/mamba_ssm/ops/triton/"
cp "$tmp"/w/mamba_ssm/utils/{__init__,torch,determinism}.py "$t/mamba_ssm/utils/"
version=$(sed -n 's/^__version__ = //p' "$tmp/w/mamba_ssm/__init__.py")
printf '__version__ = %s\n\nfrom mamba_ssm.ops.selective_scan_interface import selective_scan_fn, mamba_inner_fn\n' "$version" \
    > "$t/mamba_ssm/__init__.py"
mkdir -p .gpukern/ss .whl
tar cJf .gpukern/ss/kernels_ss.tar.xz -C "$t" .
[ -n "${SKIP_WHL:-}" ] || "${PYTHON:-python3}" -m pip download -q --no-deps -d .whl einops pytest pluggy iniconfig packaging pygments
rm -rf "$tmp"
du -sh .gpukern/ss .whl
