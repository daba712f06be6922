# A CUDA_HOME-shaped tree for the runtime JIT of FlashInfer, sglang (0.5.9: jit_kernel; 0.5.23: kernels/jit) and
# DeepGEMM (inside sgl-kernel in 0.5.9, sgl-deep-gemm in 0.5.23): bin/nvcc, include/ and lib/ (with lib/stubs) of
# the variant's cudaPackages.
#
# Which packages: matrix.toml's [jit-headers], through the nixpkgs-free layer (lib/default.nix
# `jitCudaParts`): nvcc and cudart, plus the package of every header the wheels' JIT sources include
# (curand for FlashInfer's sampling.cuh, cuBLAS, cccl, nvrtc). tools/sglang_matrix/jit_headers.py checks
# that table against the real wheels, so a header the table misses fails a test rather than the first
# kernel a user's server compiles.
{
  lib,
  symlinkJoin,
  cudaPackages,
  variant,
  # cudaPackages attribute names; the default is the matrix's list.
  jitCudaParts ? (import ../lib { }).jitCudaParts,
}:
let
  cudaParts = map (
    name:
    cudaPackages.${name}
      or (throw "sglang-matrix: cudaPackages (CUDA ${variant.cuda}) has no ${name}, which matrix.toml's [jit-headers] names")
  ) jitCudaParts;
in
symlinkJoin {
  name = "sglang-matrix-cuda-home-${variant.cuda}";
  # Every output but static archives: headers (include, dev), libraries (lib) and lib/stubs (libcuda.so
  # for linking without a driver).
  paths = lib.unique (
    lib.concatMap (
      pkg: map (output: pkg.${output}) (builtins.filter (o: o != "static") (pkg.outputs or [ "out" ]))
    ) cudaParts
  );
  passthru = {
    inherit jitCudaParts;
  };
  meta = {
    description = "CUDA_HOME for the runtime JIT of ${variant.longName}: ${lib.concatStringsSep ", " jitCudaParts}";
    platforms = [ variant.system ];
  };
}
