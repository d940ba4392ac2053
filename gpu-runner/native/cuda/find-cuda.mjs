// Build helper for binding.gyp (run by gyp's <!(…) while configuring): prints facts about the
// CUDA toolkit that `nvcc` on PATH belongs to. Never fails: without nvcc it prints defaults
// (the lora_edge_cuda target is then not configured at all).
//   node native/cuda/find-cuda.mjs home     → the toolkit's root (include/, lib64/)
//   node native/cuda/find-cuda.mjs cudart   → "static" when libcudart_static.a is there, else "shared"
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

function home() {
  for (const v of [process.env.CUDA_HOME, process.env.CUDA_PATH]) if (v && existsSync(join(v, 'include', 'cuda_runtime.h'))) return v;
  try {
    // nvcc may be a wrapper script; its dry run names the real bin directory (_HERE_).
    const r = spawnSync('nvcc', ['--dryrun', '-c', '-x', 'cu', '/dev/null', '-o', '/dev/null'], { encoding: 'utf8' });
    const m = /_HERE_=(.+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
    if (m) return dirname(m[1].trim());
  } catch {
    // no nvcc: the default below
  }
  return '/usr/local/cuda';
}

const root = home();
const what = process.argv[2];
if (what === 'home') console.log(root);
else if (what === 'cudart') {
  const lib = ['lib64', 'lib', join('targets', 'x86_64-linux', 'lib')].find((d) => existsSync(join(root, d, 'libcudart_static.a')));
  console.log(lib ? 'static' : 'shared');
} else if (what === 'libdir') {
  const lib = ['lib64', 'lib', join('targets', 'x86_64-linux', 'lib')].find((d) => existsSync(join(root, d)));
  console.log(join(root, lib ?? 'lib64'));
} else {
  console.error('usage: find-cuda.mjs home|cudart|libdir');
  process.exit(2);
}
