#!/usr/bin/env bash
# The GPU checks of the replicate engine, as one short script for a lent GPU machine
# (benchmarks/README.md, "On a GPU"). Usage: bash benchmarks/gpu_check.sh OUT_DIR
# Writes what it prints under OUT_DIR. Needs torch with CUDA, pyro-ppl, arviz, typer, rich, pytest.
set -u
OUT=${1:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}


python3 -c "import torch, pyro; print('torch', torch.__version__, '| pyro', pyro.__version__, '|',
torch.cuda.get_device_name(0))" | tee "$OUT/env.txt"

echo "== 1. replicate speedup on the GPU (goal: R = 256 at n = 5,000 in under 3x one replicate)"
timeout 180 python3 benchmarks/replicates.py --device cuda --reps 1 16 32 64 256 --sizes 500 5000 \
    --rounds 4 --steps 5 2>&1 | tee "$OUT/replicates_cuda.txt"

echo "== 2. where an R = 256, n = 5,000 step spends its time"
timeout 45 python3 - <<'PY' 2>&1 | tee "$OUT/profile_cuda.txt"
import cProfile, pstats, sys
sys.path.insert(0, "benchmarks")
import pyro, torch
from replicates import make_trainer, time_steps
trainer = make_trainer(256, 5000, "cuda")
with pyro.validation_enabled(False):
    time_steps(trainer, 3, "cuda")
    profile = cProfile.Profile()
    profile.enable()
    time_steps(trainer, 10, "cuda")
    profile.disable()
pstats.Stats(profile).sort_stats("tottime").print_stats(18)
PY

echo "== 3. on the GPU: the identity contract, the direct loss against Pyro's ELBO, the stacked networks"
PYROVAE_TEST_DEVICE=cuda timeout 150 python3 -m pytest tests/inference/test_replicates.py -q -p no:cacheprovider \
    -k "equals_the_single or pyros_elbo or what_vmap" 2>&1 | tail -25 | tee "$OUT/identity_cuda.txt"

echo "== 4. the command line on the GPU: 4 seeds as one batch, then batched HMC"
timeout 120 bash -c 'python3 -m pyrovae train --device cuda --reps 4 --n 2000 --max-steps 3000 --out /tmp/cuda_run &&
    python3 -m pyrovae posterior /tmp/cuda_run/rep-00 --method hmc --device cuda --points 20' 2>&1 | tail -30 | tee "$OUT/cli_cuda.txt"
