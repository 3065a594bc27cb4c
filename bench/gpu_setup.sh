# Source on the device machine: unpack the carried CUDA kernels (mamba-ssm, causal-conv1d) into /tmp/site.
# The wheels from ../shared/gpu-wheels are re-packed as one xz tarball (.gpukern/kernels.tar.xz, 59 MB)
# so that they fit the 64 MiB carry together with the working tree.
set -e
mkdir -p /tmp/site
for t in .gpukern/*.tar.xz .gpuscore/*.tar.xz; do [ -f "$t" ] && tar xJf "$t" -C /tmp/site; done
for w in .whl/*.whl .gpuwhl/*.whl; do [ -f "$w" ] && python3 -m pip install -q --no-index --no-deps --target /tmp/site "$w"; done
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import mamba_ssm, torch; print('mamba_ssm', mamba_ssm.__version__, 'torch', torch.__version__)"
python3 -c "import causal_conv1d; print('causal_conv1d', causal_conv1d.__version__)" || true
set +e
