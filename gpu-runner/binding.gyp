# The native backend of the runner. Portable by construction: the addon and the portable kernels
# use baseline flags only (no -march=native), and each SIMD kernel set is its own static library
# compiled with its own -m flags; dispatch.cc picks one at run time from the CPU's features.
#
# CUDA: `with_cuda` is 1 when nvcc runs (override: `node-gyp rebuild -- -Dwith_cuda=0`); then a
# separate module, lora_edge_cuda, is built from native/cuda/*.cu by nvcc (see gpu-runner/CUDA.md).
# scripts/build-native.mjs builds it in a second pass so a CUDA failure never breaks the CPU addon.
{
  'variables': {
    'with_cuda%': '<!(node -p "(() => { try { require(\'child_process\').execFileSync(\'nvcc\', [\'--version\'], { stdio: \'ignore\' }); return 1 } catch { return 0 } })()")',
    'is_x86%': '<!(node -p "[\'x64\', \'ia32\'].includes(process.arch) ? 1 : 0")',
    # The CUDA toolkit of the nvcc on PATH (CUDA_HOME / CUDA_PATH win) and whether its runtime
    # can be linked statically (then the module needs only the driver's libcuda at run time).
    'cuda_home%': '<!(node native/cuda/find-cuda.mjs home)',
    'cuda_libdir%': '<!(node native/cuda/find-cuda.mjs libdir)',
    'cuda_runtime%': '<!(node native/cuda/find-cuda.mjs cudart)',
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
  'conditions': [
    # The cuda backend: its own N-API module, lora_edge_cuda, configured only where nvcc runs.
    # scripts/build-native.mjs builds it in a second pass, after the cpu-native addon, so that a
    # CUDA failure can never cost the CPU addon (see CUDA.md).
    ['with_cuda==1', {
      'targets': [
        {
          'target_name': 'lora_edge_cuda',
          'sources': [
            'native/cuda/addon.cc',
            'native/cuda/device.cc',
            'native/cuda/matmul.cu',
            'native/cuda/ops.cu',
          ],
          'include_dirs': ['<(cuda_home)/include'],
          'dependencies': ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
          'rules': [
            {
              # Few translation units, two real architectures (Ampere, Hopper) plus Hopper PTX for
              # newer GPUs to JIT: about half a minute of nvcc on two cores.
              'rule_name': 'nvcc',
              'extension': 'cu',
              'inputs': ['native/cuda/common.cuh', 'native/cuda/kernels.h'],
              'outputs': ['<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o'],
              'action': [
                'nvcc', '-c', '<(RULE_INPUT_PATH)', '-o', '<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o',
                '-std=c++17', '-O3', '-Xcompiler', '-fPIC',
                '-gencode', 'arch=compute_80,code=sm_80',
                '-gencode', 'arch=compute_90,code=[sm_90,compute_90]',
              ],
              'message': 'nvcc <(RULE_INPUT_PATH)',
              'process_outputs_as_sources': 1,
            },
          ],
          'conditions': [
            ['cuda_runtime=="static"', {
              'libraries': ['-L<(cuda_libdir)', '-lcudart_static', '-ldl', '-lrt', '-lpthread'],
            }, {
              'libraries': ['-L<(cuda_libdir)', '-lcudart', '-Wl,-rpath,<(cuda_libdir)'],
            }],
          ],
        },
      ],
    }],
  ],
}
