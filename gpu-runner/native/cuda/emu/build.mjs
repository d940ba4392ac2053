// Builds the CUDA module against the CPU emulation (emu.h / emu.cc) with g++, for checking the
// real kernels, the real N-API glue and the real tests on a machine without a GPU:
//
//   node native/cuda/emu/build.mjs            → build/emu/lora_edge_cuda.node
//   LORA_EDGE_CUDA_MODULE=$PWD/build/emu/lora_edge_cuda.node npx vitest run src/backend/cuda.test.ts
//
// The .cu sources are copied with three mechanical rewrites: the CUDA headers become emu.h,
// `kernel<<<grid, block, smem, stream>>>(args)` becomes `emu::launch([&] { kernel(args); }, grid,
// block, smem, stream)`, and `extern __shared__` becomes the launch's dynamic buffer. Needs the
// CUDA toolkit's headers (not nvcc, not a GPU). Run from gpu-runner/ (cwd independent).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const cudaDir = join(here, '..');
const runner = join(cudaDir, '..', '..');
const out = join(runner, 'build', 'emu');
const src = join(out, 'src');
mkdirSync(src, { recursive: true });

const cudaHome = execFileSync(process.execPath, [join(cudaDir, 'find-cuda.mjs'), 'home'], { encoding: 'utf8' }).trim();
const nodeInclude = join(dirname(dirname(process.execPath)), 'include', 'node');
const napiInclude = createRequire(join(runner, 'package.json'))('node-addon-api').include_dir;

function rewrite(text) {
  return text
    .replace(/#include <cuda_fp16\.h>\n/, '#include "emu.h"\n')
    .replace(/#include <cuda_runtime\.h>\n/, '')
    .replace(/extern __shared__ float (\w+)\[\];/g, 'float* $1 = ::emu::dynamicSharedAs<float>();')
    .replace(/([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<([\s\S]*?)>>>\(([\s\S]*?)\);/g, '::emu::launch([&] { $1($3); }, $2);');
}

for (const f of ['common.cuh', 'kernels.h']) writeFileSync(join(src, f), rewrite(readFileSync(join(cudaDir, f), 'utf8')));
for (const f of ['matmul', 'ops']) {
  writeFileSync(join(src, `${f}.cc`), rewrite(readFileSync(join(cudaDir, `${f}.cu`), 'utf8')));
}

const common = ['-std=c++17', '-O2', '-g', '-fPIC', '-Wall', '-Wno-unknown-pragmas', '-Wno-unused-function', `-I${cudaHome}/include`];
const napi = [`-I${nodeInclude}`, `-I${napiInclude}`, '-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNAPI_CPP_EXCEPTIONS'];
const units = [
  [join(here, 'emu.cc'), [`-I${here}`]],
  [join(src, 'matmul.cc'), [`-I${here}`, `-I${src}`]],
  [join(src, 'ops.cc'), [`-I${here}`, `-I${src}`]],
  [join(cudaDir, 'addon.cc'), napi],
  [join(cudaDir, 'device.cc'), []],
];
const objects = units.map(([file, flags]) => {
  const o = join(out, `${file.split('/').at(-1)}.o`);
  execFileSync('g++', [...common, ...flags, '-c', file, '-o', o], { stdio: 'inherit' });
  return o;
});
const module = join(out, 'lora_edge_cuda.node');
execFileSync('g++', ['-shared', '-o', module, ...objects], { stdio: 'inherit' });
console.log(module);

// The standalone check / benchmark program too (`build/emu/bench check`): its timings mean
// nothing here, its checks do.
writeFileSync(
  join(src, 'bench.cc'),
  rewrite(readFileSync(join(cudaDir, 'bench.cu'), 'utf8')).replace('#include <cuda_runtime.h>', '#include "emu.h"'),
);
const benchObj = join(out, 'bench.cc.o');
execFileSync('g++', [...common, `-I${here}`, `-I${src}`, '-c', join(src, 'bench.cc'), '-o', benchObj], { stdio: 'inherit' });
const bench = join(out, 'bench');
execFileSync('g++', ['-o', bench, benchObj, ...objects.slice(0, 3)], { stdio: 'inherit' });
console.log(bench);
