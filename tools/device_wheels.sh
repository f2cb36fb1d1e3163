#!/usr/bin/env bash
# Fill the git-ignored .whl/ with what the GPU machine's image lacks, for tools/gpu_session.sh and `ishow bench`
# there (Python 3.12, torch/triton/aiohttp/numpy already installed; no network on that machine): the upstream
# F5-TTS oracle wheels (../shared/wheels/oracle), the daemon's own runtime dependencies as cp312 wheels, and the
# optional cuDNN frontend (padded attention on cuDNN, see ishow/engine/accel/cudnn_attention.py).
# Run here (PyPI reachable), then carry .whl in the device call: run(carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
ORACLE=${ORACLE:-../shared/wheels/oracle}
[ -d "$ORACLE" ] && cp "$ORACLE"/*.whl .whl/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
  structlog watchfiles anyio sniffio idna prometheus_client brotli pyyaml sounddevice espeakng-loader \
  pytest-asyncio nvidia-cudnn-frontend==1.28.0  # pytest-asyncio: the async tests; the [cudnn] extra (1.28: the last release that does not pull NVIDIA's CuTe DSL)
ls .whl | wc -l
du -sh .whl
