#!/usr/bin/env bash
# Build a wheel and use it from a fresh virtual environment outside the checkout: the library
# call, the demo, and one command of each kind. clipscope itself comes from the wheel (asserted);
# its dependencies (torch and friends, several GB) are borrowed from the test environment
# through a .pth path so that CI does not download them twice.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEV="$ROOT/.venv/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$DEV" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT" 2>"$WORK/build.log" || { cat "$WORK/build.log"; exit 1; }
if grep -qi "deprecat" "$WORK/build.log"; then grep -i -A3 "deprecat" "$WORK/build.log"; echo "wheel-check: setuptools deprecation warnings" >&2; exit 1; fi
"$DEV" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
CS="$WORK/venv/bin/clipscope"
"$DEV" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/clipscope-deps.pth"
"$PY" -m pip install -q --no-deps "$WORK"/dist/*.whl
cd "$WORK"
export HF_HUB_OFFLINE=1 CLIPSCOPE_CACHE_DIR="$WORK/content-cache"
"$PY" - <<'PYEOF'
import sys, clipscope
assert clipscope.__file__.startswith(sys.prefix), f"clipscope imported from {clipscope.__file__}, not the wheel"
r = clipscope.run("gap", model="clipscope-tiny", data="probes:64")
print("wheel-check: clipscope.run('gap') centroid_distance =", r.metrics["centroid_distance"].value)
PYEOF
"$CS" --help >/dev/null
"$CS" demo --out demo >/dev/null
"$CS" info demo/cache.h5 >/dev/null
"$CS" extract --model clipscope-tiny --pretrained none --data probes:32 --out rand.h5 -q
"$PY" -c "import numpy as np; np.save('pairs.npy', np.random.default_rng(0).normal(size=(2, 50, 16)).astype('float32'))"
"$CS" import --pair-array pairs.npy --out imported.h5 >/dev/null
"$CS" gap imported.h5 --out runs/gap -q
"$CS" uniformity imported.h5 --out runs/uniformity -q
"$CS" invert rand.h5 --model clipscope-tiny --pretrained none --mode oti --steps 3 --out runs/invert -q
"$CS" blindpairs --model clipscope-tiny --benchmark probes --out runs/blindpairs -q
"$CS" robustness --model clipscope-tiny --data probes:24 --corruptions contrast --severities 1 --out runs/robustness -q
"$CS" drift demo/cache.h5 rand.h5 --out runs/drift -q --no-plots
"$CS" compose --model clipscope-tiny --benchmark probes:4 --out runs/compose -q
"$CS" direction demo/cache.h5 --a "class:red circle" --b "class:blue circle" --out runs/direction -q
test -s runs/direction/direction_image.npy
"$CS" export demo/cache.h5 --runs demo --out rows.parquet >/dev/null
"$CS" explore demo/cache.h5 --format tensorboard --out tb >/dev/null
test -s tb/tensors.tsv
"$CS" report runs -o runs/report.html >/dev/null
"$CS" compare demo runs >/dev/null || [ $? -eq 3 ]
printf '[[run]]\ncommand = "gap"\ncache = "imported.h5"\noptions = { no_plots = true }\n' > suite.toml
"$CS" check suite.toml --out runs/check >/dev/null
echo "wheel-check: the wheel installs outside the checkout and every command ran from it"
