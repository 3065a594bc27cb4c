# Source on the device machine: unpack the carried CUDA kernels (mamba-ssm, causal-conv1d) into /tmp/site.
# The wheels from ../shared/gpu-wheels are re-packed as xz tarballs so that they fit the 64 MiB carry
# together with the working tree: .gpukern/kernels.tar.xz (both, 59 MB; no longer fits next to the
# current tree), or .gpukern/ss/kernels_ss.tar.xz (mamba_ssm, 37 MB; its python trimmed to
# selective_scan_interface + layer_norm + utils, __init__ importing only those) and
# .gpukern/cc/kernels_cc.tar.xz (causal_conv1d, 22 MB), carried in two back-to-back calls
# (the warm machine keeps the first's .gpukern/ss and /tmp/site).
set -e
mkdir -p /tmp/site
for t in .gpukern/*.tar.xz .gpukern/*/*.tar.xz .gpuscore/*.tar.xz; do [ -f "$t" ] && tar xJf "$t" -C /tmp/site; done
for w in .whl/*.whl .gpuwhl/*.whl; do [ -f "$w" ] && python3 -m pip install -q --no-index --no-deps --target /tmp/site "$w"; done
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import mamba_ssm, torch; print('mamba_ssm', mamba_ssm.__version__, 'torch', torch.__version__)"
python3 -c "import causal_conv1d; print('causal_conv1d', causal_conv1d.__version__)" || true
set +e
