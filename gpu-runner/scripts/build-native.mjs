// Builds the native addon. npm runs this as the workspace's install script, so `npm ci` on a
// fresh clone builds it; `npm run build:native -w @lora-edge/gpu-runner` rebuilds it by hand.
// node-gyp compiles against the headers installed beside the running Node when they exist, so
// nothing is downloaded (an explicit `nodedir` npm config still wins).
//
// A failed build does not fail the whole install (a machine without a C++ compiler can still
// work on the other packages; the runner then falls back to the js backend and the cpu-native
// tests say why). `--strict` (build:native) or LORA_EDGE_REQUIRE_NATIVE=1 (the runner image)
// make it fatal.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = dirname(dirname(process.execPath));
const args = ['rebuild', '--jobs=max'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);

// npm hands its bundled node-gyp to lifecycle scripts; run directly, use the one npm ships with.
const gyp = [
  process.env.npm_config_node_gyp,
  join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));
const result = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { cwd: root, stdio: 'inherit' })
  : spawnSync('node-gyp', args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
if (result.status !== 0) {
  const why = result.error
    ? `node-gyp could not start (${result.error.message})`
    : `node-gyp exited with ${result.status ?? result.signal}`;
  console.error(`lora-edge: the cpu-native addon was not built: ${why}. The runner will use the js backend.`);
  process.exit(process.argv.includes('--strict') || process.env.LORA_EDGE_REQUIRE_NATIVE === '1' ? 1 : 0);
}
