#!/usr/bin/env bash
# The cuda backend's checks on a lent GPU machine, as ONE prepared run (see gpu-runner/CUDA.md).
#
# 1. Here (the machine without a GPU), from the repository root:
#      bash gpu-runner/scripts/gpu-check.sh pack
#    builds both native modules, and packs what the GPU machine lacks into .gpu-carry/ (ignored
#    through .git/info/exclude): a Node binary, the node_modules that vitest and the runner need,
#    and Node's N-API headers (about 40 MB, xz). It prints the device call to make.
# 2. On the GPU machine (through the device tool), from the repository root:
#      bash gpu-runner/scripts/gpu-check.sh
#    with carry [".gpu-carry", "gpu-runner/build/Release"] and timeout_s 540. In this order (the
#    most telling first; each step time-boxed, the whole within GPU_CHECK_BUDGET = 480 s) it
#    - reports the GPU, driver, nvcc and Node;
#    - builds lora_edge_cuda and native/cuda/bench.cu for sm_90 with nvcc there (ptxas report kept);
#    - runs `bench check`: every kernel against float64 references, no Node needed;
#    - runs src/backend/cuda.test.ts on that build (ops vs float64 and the js backend, and the
#      engine's golden generations on the GPU), then src/engine with LORA_EDGE_BACKEND=cuda;
#    - times every kernel against the memory-bandwidth floor (`bench time`);
#    - runs cuda.test.ts again on the carried module that `npm ci` built here (sm_80 + sm_90 + PTX);
#    - runs `bench check` under compute-sanitizer memcheck, then racecheck, in the time left;
#    and writes under $OUT (8 files): gpu-check.log (everything), summary.txt, bench-check.txt,
#    bench.tsv, ptxas.txt, sanitizer.txt, vitest-cuda.log, vitest-engine.log. The summary table
#    (steps, then the kernel timings) is printed last.
set -uo pipefail

if [ "${1:-}" = pack ]; then
  set -e
  root=$(git rev-parse --show-toplevel)
  cd "$root"
  node gpu-runner/scripts/build-native.mjs --strict
  test -f gpu-runner/build/Release/lora_edge_cuda.node
  rm -rf .gpu-carry && mkdir -p .gpu-carry/node-include
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qx '/.gpu-carry/' "$exclude" 2>/dev/null || echo '/.gpu-carry/' >>"$exclude"
  node_bin=$(node -p process.execPath)
  xz -T2 -3 -c "$node_bin" >.gpu-carry/node.xz
  node_inc=$(dirname "$(dirname "$node_bin")")/include/node
  cp "$node_inc"/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} .gpu-carry/node-include/
  # vitest, node-addon-api and zod with everything they depend on, plus the workspace links.
  node -e '
    const { existsSync, readFileSync } = require("node:fs");
    const { dirname, join, relative } = require("node:path");
    const root = process.cwd(), seen = new Set();
    const find = (name, from) => { for (let d = from; ; d = dirname(d)) { const p = join(d, "node_modules", name); if (existsSync(join(p, "package.json"))) return p; if (dirname(d) === d) return null; } };
    const walk = (dir) => { if (!dir || seen.has(dir)) return; seen.add(dir); const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      for (const n of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) walk(find(n, dir)); };
    for (const n of ["vitest", "node-addon-api", "zod"]) walk(find(n, root));
    for (const d of seen) console.log(relative(root, d));
    console.log("node_modules/@lora-edge");' >.gpu-carry/node_modules.list
  tar -cf - -T .gpu-carry/node_modules.list | xz -T2 -3 >.gpu-carry/node_modules.tar.xz
  du -sh .gpu-carry gpu-runner/build/Release
  cat <<'EOF'
Now, in a session whose task has a device (status: can_start_another), one call:
  run(command: "bash gpu-runner/scripts/gpu-check.sh", carry: [".gpu-carry", "gpu-runner/build/Release"], timeout_s: 540)
then give_back. Results: files under files_at (summary.txt, bench.tsv, logs).
EOF
  exit 0
fi

# ------------------------------------------------------------------------------------------------
# On the GPU machine.

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
OUT=${OUT:-$root/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
t0=$(date +%s)
B=$root/gpu-runner/build/gpu
mkdir -p "$B"
summary=()
# The device call's limit is 540 s here: later, optional steps get what is left (GPU_CHECK_BUDGET).
BUDGET=${GPU_CHECK_BUDGET:-480}
cap() { # cap SECONDS → min(SECONDS, what is left of the budget)
  local left=$((BUDGET - ($(date +%s) - t0)))
  echo $((left < $1 ? left : $1))
}
step() { # step NAME STATUS
  summary+=("$(printf '%-44s %s' "$1" "$2")")
  echo "== $1: $2 ($(($(date +%s) - t0)) s)"
}

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 || true
nvcc --version | tail -2
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
[ -f "$CUDA_HOME/include/cuda_runtime.h" ] || CUDA_HOME=/usr/local/cuda
echo "CUDA_HOME=$CUDA_HOME"

# Node: the machine's own (≥ 20), else the carried binary.
NODE=$(command -v node || true)
if [ -z "$NODE" ] || ! "$NODE" -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  NODE=
  if [ -f .gpu-carry/node.xz ]; then
    mkdir -p /tmp/le-node
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' .gpu-carry/node.xz /tmp/le-node/node &&
      chmod +x /tmp/le-node/node && NODE=/tmp/le-node/node
  fi
fi
if [ -n "$NODE" ]; then
  export PATH=$(dirname "$NODE"):$PATH
  echo "node $("$NODE" --version) at $NODE"
else
  echo "no Node: the vitest steps are skipped (run 'gpu-check.sh pack' here first and carry .gpu-carry)"
fi
if [ ! -d node_modules/vitest ] && [ -f .gpu-carry/node_modules.tar.xz ]; then
  python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(".")' .gpu-carry/node_modules.tar.xz
fi

# --- build: the module for sm_90 with this machine's nvcc -------------------------------------
NV="-std=c++17 -O3 -Xcompiler -fPIC -gencode arch=compute_90,code=sm_90"
NODE_INC=$root/.gpu-carry/node-include
[ -f "$NODE_INC/node_api.h" ] || NODE_INC=$(dirname "$(dirname "${NODE:-/usr/bin/node}")")/include/node
NAPI_INC=$root/node_modules/node-addon-api
CX="-std=c++17 -O3 -fPIC -I$CUDA_HOME/include -I$NODE_INC -I$NAPI_INC -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -DNAPI_CPP_EXCEPTIONS"
built=0
if (
  set -e
  cd gpu-runner/native/cuda
  nvcc $NV -Xptxas -v -c matmul.cu -o "$B/matmul.o" 2>"$B/ptxas-matmul.txt" &
  p1=$!
  nvcc $NV -Xptxas -v -c ops.cu -o "$B/ops.o" 2>"$B/ptxas-ops.txt" &
  p2=$!
  nvcc -std=c++17 -O3 -gencode arch=compute_90,code=sm_90 bench.cu matmul.cu ops.cu -o "$B/bench" &
  p3=$!
  wait $p1 && wait $p2 && wait $p3
  g++ $CX -c addon.cc -o "$B/addon.o"
  g++ $CX -c device.cc -o "$B/device.o"
  g++ -shared -o "$B/lora_edge_cuda.node" "$B"/{addon,device,matmul,ops}.o -L"$CUDA_HOME/lib64" -lcudart_static -ldl -lrt -lpthread
); then
  built=1
  step "build lora_edge_cuda + bench (sm_90)" ok
else
  step "build lora_edge_cuda + bench (sm_90)" FAILED
fi
cat "$B"/ptxas-*.txt 2>/dev/null | grep -E "Compiling|registers|spill|stack" >"$OUT/ptxas.txt" || true
for m in gpu-runner/build/Release/lora_edge_cuda.node "$B/lora_edge_cuda.node"; do
  [ -f "$m" ] && command -v cuobjdump >/dev/null && { echo "-- $m"; cuobjdump --list-elf "$m"; cuobjdump --list-ptx "$m"; } >>"$OUT/ptxas.txt" 2>&1
done

# --- bench check: kernels vs float64, no Node --------------------------------------------------
if [ -x "$B/bench" ]; then
  if timeout $(cap 120) "$B/bench" check >"$OUT/bench-check.txt" 2>&1; then step "bench check (kernels vs float64)" ok; else step "bench check (kernels vs float64)" "FAILED (see bench-check.txt)"; fi
  tail -1 "$OUT/bench-check.txt"
fi

# --- vitest: the cuda suite on both builds, the engine suite --------------------------------------
cat >"$B/vitest.gpu.mjs" <<'EOF'
import { fileURLToPath } from 'node:url';
// The repository root without its projects (the Workers pools are not carried here).
export default { root: fileURLToPath(new URL('../../..', import.meta.url)), test: { include: ['gpu-runner/src/**/*.test.ts'], testTimeout: 300000, hookTimeout: 300000 } };
EOF
if [ -n "$NODE" ] && [ -d node_modules/vitest ]; then
  [ $built = 1 ] && "$NODE" -e 'console.log(JSON.stringify(require(process.argv[1]).info()))' "$B/lora_edge_cuda.node" 2>&1
  : >"$OUT/vitest-cuda.log"
  if [ $built = 1 ]; then
    if LORA_EDGE_CUDA_MODULE=$B/lora_edge_cuda.node timeout $(cap 200) "$NODE" node_modules/vitest/vitest.mjs run --config "$B/vitest.gpu.mjs" \
      gpu-runner/src/backend/cuda.test.ts >>"$OUT/vitest-cuda.log" 2>&1; then s=ok; else s="FAILED (see vitest-cuda.log)"; fi
    step "cuda.test.ts on the sm_90 build" "$s ($(grep -E 'Tests ' "$OUT/vitest-cuda.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | xargs))"
  fi
  if LORA_EDGE_BACKEND=cuda LORA_EDGE_CUDA_MODULE=$B/lora_edge_cuda.node timeout $(cap 120) "$NODE" node_modules/vitest/vitest.mjs run \
    --config "$B/vitest.gpu.mjs" gpu-runner/src/engine >"$OUT/vitest-engine.log" 2>&1; then s=ok; else s="FAILED (see vitest-engine.log)"; fi
  step "engine tests, LORA_EDGE_BACKEND=cuda" "$s ($(grep -E 'Tests ' "$OUT/vitest-engine.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | xargs))"
else
  step "vitest" "skipped (no Node or node_modules)"
fi

# --- timings vs the bandwidth floor --------------------------------------------------------------
if [ -x "$B/bench" ]; then
  if timeout $(cap 150) "$B/bench" time "$OUT/bench.tsv" >"$B/bench-time.txt" 2>&1; then s=ok; else s=FAILED; fi
  step "bench time" "$s"
fi

# --- the same suite on the module `npm ci` built here (sm_80 + sm_90 + PTX, static cudart) -------
if [ -n "$NODE" ] && [ -d node_modules/vitest ] && [ "$(cap 150)" -ge 30 ]; then
  if [ -f gpu-runner/build/Release/lora_edge_cuda.node ]; then
    if timeout $(cap 150) "$NODE" node_modules/vitest/vitest.mjs run --config "$B/vitest.gpu.mjs" gpu-runner/src/backend/cuda.test.ts \
      >>"$OUT/vitest-cuda.log" 2>&1; then s=ok; else s="FAILED (see vitest-cuda.log)"; fi
    step "cuda.test.ts on the npm-built module" "$s ($(grep -E 'Tests ' "$OUT/vitest-cuda.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | xargs))"
  fi
fi

# --- compute-sanitizer over bench check, in the time that is left ----------------------------------
if [ -x "$B/bench" ]; then
  if command -v compute-sanitizer >/dev/null; then
    : >"$OUT/sanitizer.txt"
    for tool in memcheck racecheck; do
      [ "$(cap 200)" -ge 30 ] || { step "compute-sanitizer $tool" "skipped (time budget)"; continue; }
      timeout $(cap 200) compute-sanitizer --tool $tool --error-exitcode 9 "$B/bench" check >>"$OUT/sanitizer.txt" 2>&1
      rc=$?
      case $rc in 0) s=ok ;; 124) s="timed out" ;; 9) s="ERRORS (see sanitizer.txt)" ;; *) s="rc $rc" ;; esac
      step "compute-sanitizer $tool (bench check)" "$s"
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer.txt" | tail -1
    done
  else
    step "compute-sanitizer" "not installed"
  fi
fi

{
  echo
  echo "== summary ($(($(date +%s) - t0)) s)"
  printf '%s\n' "${summary[@]}"
  echo
  echo "== kernel timings (median, device only; floor = bytes / measured copy rate)"
  cat "$B/bench-time.txt" 2>/dev/null
} | tee "$OUT/summary.txt"
