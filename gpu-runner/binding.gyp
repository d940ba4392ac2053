# The native backend of the runner. Portable by construction: the addon and the portable kernels
# use baseline flags only (no -march=native), and each SIMD kernel set is its own static library
# compiled with its own -m flags; dispatch.cc picks one at run time from the CPU's features.
#
# CUDA slot: `with_cuda` is 1 when nvcc is on PATH (override: `node-gyp rebuild -- -Dwith_cuda=0`).
# A CUDA kernel set will be a static_library target `kernels_cuda` under a
# ['with_cuda==1', {...}] condition, with a gyp 'rules' entry that runs nvcc on its .cu files
# (extension 'cu', outputs '<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o', action nvcc -c -Xcompiler
# -fPIC), linked into lora_edge_native with -lcudart and the define LE_WITH_CUDA. Nothing uses
# it yet.
{
  'variables': {
    'with_cuda%': '<!(node -p "(() => { try { require(\'child_process\').execFileSync(\'nvcc\', [\'--version\'], { stdio: \'ignore\' }); return 1 } catch { return 0 } })()")',
    'is_x86%': '<!(node -p "[\'x64\', \'ia32\'].includes(process.arch) ? 1 : 0")',
  },
  'target_defaults': {
    'cflags_cc': ['-std=c++17', '-O3', '-fno-math-errno'],
    'cflags_cc!': ['-std=gnu++17', '-fno-exceptions', '-fno-rtti'],
    'cflags!': ['-fno-exceptions'],
    'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED'],
  },
  'targets': [
    {
      'target_name': 'kernels_portable',
      'type': 'static_library',
      'sources': ['native/kernels/scalar.cc'],
    },
    {
      'target_name': 'kernels_avx2',
      'type': 'static_library',
      'sources': ['native/kernels/avx2.cc'],
      'conditions': [['is_x86==1', {'cflags_cc': ['-mavx2', '-mfma', '-mf16c']}]],
    },
    {
      'target_name': 'kernels_avx512',
      'type': 'static_library',
      'sources': ['native/kernels/avx512.cc'],
      'conditions': [
        ['is_x86==1', {'cflags_cc': ['-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq',
                         # GCC 12 false positives inside avx512fintrin.h (the self-initialized undefined vectors)
                         '-Wno-uninitialized', '-Wno-maybe-uninitialized']}],
      ],
    },
    {
      'target_name': 'lora_edge_native',
      'sources': [
        'native/addon.cc',
        'native/args.cc',
        'native/dispatch.cc',
        'native/handles.cc',
        'native/lora.cc',
        'native/matmul.cc',
        'native/ops.cc',
        'native/thread_pool.cc',
      ],
      'dependencies': [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
        'kernels_portable',
        'kernels_avx2',
        'kernels_avx512',
      ],
    },
  ],
}
