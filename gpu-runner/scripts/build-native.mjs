// Builds the native addons. npm runs this as the workspace's install script, so `npm ci` on a
// fresh clone builds them; `npm run build:native -w @lora-edge/gpu-runner` rebuilds them by hand.
// node-gyp compiles against the headers installed beside the running Node when they exist, so
// nothing is downloaded (an explicit `nodedir` npm config still wins).
//
// Two passes over binding.gyp:
// 1. the cpu-native addon (lora_edge_native), configured with with_cuda=0;
// 2. where nvcc runs, the cuda backend's module (lora_edge_cuda): the same build directory is
//    reconfigured with with_cuda=1 and built again; make finds the CPU targets up to date and
//    builds only the CUDA one. A CUDA failure therefore never costs the CPU addon.
//
// A failed build does not fail the whole install (a machine without a C++ compiler or with a
// broken CUDA toolkit can still work on the other packages; the runner then falls back to the
// js backend, resp. has no cuda backend, and the tests say why). `--strict` (build:native) or
// LORA_EDGE_REQUIRE_NATIVE=1 (the runner image) make a CPU failure fatal; a CUDA failure is fatal
// with `--strict` where nvcc is present, or with LORA_EDGE_REQUIRE_CUDA=1. LORA_EDGE_CUDA=0 skips
// the CUDA pass.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = dirname(dirname(process.execPath));
const strict = process.argv.includes('--strict');
const common = [];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) common.push(`--nodedir=${prefix}`);

// npm hands its bundled node-gyp to lifecycle scripts; run directly, use the one npm ships with.
const gyp = [
  process.env.npm_config_node_gyp,
  join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));

function nodeGyp(args) {
  const all = [...args.slice(0, 1), ...common, ...args.slice(1)];
  return gyp
    ? spawnSync(process.execPath, [gyp, ...all], { cwd: root, stdio: 'inherit' })
    : spawnSync('node-gyp', all, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
}

function why(result) {
  return result.error ? `node-gyp could not start (${result.error.message})` : `node-gyp exited with ${result.status ?? result.signal}`;
}

// Pass 1: the cpu-native addon.
const cpu = nodeGyp(['rebuild', '--jobs=max', '--', '-Dwith_cuda=0']);
if (cpu.status !== 0) {
  console.error(`lora-edge: the cpu-native addon was not built: ${why(cpu)}. The runner will use the js backend.`);
  process.exit(strict || process.env.LORA_EDGE_REQUIRE_NATIVE === '1' ? 1 : 0);
}

// Pass 2: the cuda module, only where nvcc runs.
const requireCuda = process.env.LORA_EDGE_REQUIRE_CUDA === '1';
const hasNvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;
if (process.env.LORA_EDGE_CUDA === '0' || !hasNvcc) {
  if (requireCuda) {
    console.error(`lora-edge: LORA_EDGE_REQUIRE_CUDA=1 but ${hasNvcc ? 'LORA_EDGE_CUDA=0 skips the CUDA module' : 'nvcc is not on PATH'}.`);
    process.exit(1);
  }
  process.exit(0);
}
const t0 = Date.now();
let cuda = nodeGyp(['configure', '--', '-Dwith_cuda=1']);
if (cuda.status === 0) cuda = nodeGyp(['build', '--jobs=max']);
if (cuda.status !== 0) {
  console.error(
    `lora-edge: the CUDA module (lora_edge_cuda) was not built: ${why(cuda)}. The cpu-native addon is built; the cuda backend is unavailable.`,
  );
  // Leave a build directory whose plain `node-gyp build` works again (CPU targets only).
  nodeGyp(['configure', '--', '-Dwith_cuda=0']);
  process.exit(requireCuda || strict ? 1 : 0);
}
console.error(`lora-edge: built the CUDA module (lora_edge_cuda) in ${((Date.now() - t0) / 1000).toFixed(1)} s.`);
