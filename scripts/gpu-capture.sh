#!/bin/bash
# Records real nvidia-smi outputs on a GPU machine for the fixture-based tests
# (tests/fixtures/nvidia-smi/) and runs the GPU fact and smoke test there. Writes into $1.
# Needs only nvidia-smi and python3; PyTorch (when present) makes a load for the
# utilisation captures.
set -u
out=${1:?usage: gpu-capture.sh OUTDIR}
mkdir -p "$out"
q=index,uuid,name,memory.total,mig.mode.current,driver_version
u=uuid,utilization.gpu,memory.used
apps=gpu_uuid,pid,used_memory
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=$q --format=csv,noheader,nounits > "$out/query.csv" 2>&1
nvidia-smi -L > "$out/list.txt" 2>&1
nvidia-smi -q -x > "$out/query.xml" 2>&1
nvidia-smi --query-gpu=$u --format=csv,noheader,nounits > "$out/utilization-idle.csv" 2>&1
nvidia-smi --query-compute-apps=$apps --format=csv,noheader,nounits > "$out/apps-idle.csv" 2>&1
python3 roles/gpu_facts/files/gpu.fact > "$out/gpu.fact.json" 2> "$out/gpu.fact.err"
python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())' > "$out/torch.txt" 2>&1
if python3 -c 'import torch' 2>/dev/null; then
  python3 - > "$out/load.log" 2>&1 <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
end = time.time() + 25
while time.time() < end:
    torch.matmul(a, a)
torch.cuda.synchronize()
PY
  load=$!
  sleep 10
  for i in 1 2 3; do
    nvidia-smi --query-gpu=$u --format=csv,noheader,nounits >> "$out/utilization-busy.csv" 2>&1
    sleep 2
  done
  nvidia-smi --query-compute-apps=$apps --format=csv,noheader,nounits > "$out/apps-busy.csv" 2>&1
  wait $load
  timeout 120 python3 playbooks/files/gpu_smoke.py > "$out/gpu_smoke.json" 2>&1
fi
nvidia-smi --version > "$out/version.txt" 2>&1
ls -la "$out"
