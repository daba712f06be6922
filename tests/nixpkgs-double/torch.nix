# torch 2.9.1 for the double: the argument list of nixpkgs'
# pkgs/development/python-modules/torch/source/default.nix at the pin, exactly (no `...`), and the
# attributes sglang-matrix's override touches (preConfigure with TORCH_CUDA_ARCH_LIST, preBuild's
# MAX_JOBS line, env.NIX_CFLAGS_COMPILE, big-parallel, split outputs, passthru.cudaCapabilities).
{
  mkDerivation,
  makeOverridable,
  pkgs,
  interp,
}:
# The argument names below shadow lib, python and numactl; the body reaches them through `pkgs`/`interp`.
makeOverridable (
  {
    stdenv ? null,
    lib ? null,
    fetchFromGitHub ? null,
    fetchFromGitLab ? null,
    git-unroll ? null,
    buildPythonPackage ? null,
    python ? null,
    runCommand ? null,
    writeShellScript ? null,
    config ? pkgs.config,
    cudaSupport ? config.cudaSupport or false,
    cudaPackages ? pkgs.cudaPackages,
    autoAddDriverRunpath ? null,
    effectiveMagma ? null,
    magma ? null,
    magma-hip ? null,
    magma-cuda-static ? null,
    useSystemNccl ? true,
    MPISupport ? false,
    mpi ? null,
    buildDocs ? false,
    targetPackages ? null,
    callPackage ? null,
    cmake ? null,
    symlinkJoin ? null,
    which ? null,
    pybind11 ? null,
    pkg-config ? null,
    removeReferencesTo ? null,
    openssl ? null,
    numactl ? null,
    llvmPackages ? null,
    astunparse ? null,
    binutils ? null,
    expecttest ? null,
    filelock ? null,
    fsspec ? null,
    hypothesis ? null,
    jinja2 ? null,
    networkx ? null,
    packaging ? null,
    psutil ? null,
    pyyaml ? null,
    requests ? null,
    sympy ? null,
    types-dataclasses ? null,
    typing-extensions ? null,
    tritonSupport ? true,
    triton ? null,
    _tritonEffective ? null,
    triton-cuda ? null,
    mklDnnSupport ? true,
    blas ? null,
    ninja ? null,
    pillow ? null,
    six ? null,
    tensorboard ? null,
    protobuf ? null,
    rocmSupport ? false,
    rocmPackages ? null,
    gpuTargets ? [ ],
    vulkanSupport ? false,
    vulkan-headers ? null,
    vulkan-loader ? null,
    shaderc ? null,
  }:
  let
    inherit (pkgs) lib;
    capabilities = config.cudaCapabilities or [ ];
    gpuTargetString = builtins.concatStringsSep ";" (if gpuTargets != [ ] then gpuTargets else capabilities);
  in
  mkDerivation {
    pname = "torch";
    version = "2.9.1";
    # As buildPythonPackage names it.
    name = "python${interp.pythonVersion}-torch-2.9.1";
    outputs = [
      "out"
      "dev"
      "lib"
      "cxxdev"
    ];
    preConfigure = lib.optionalString cudaSupport ''
      export TORCH_CUDA_ARCH_LIST="${gpuTargetString}"
    '';
    preBuild = ''
      export MAX_JOBS=$NIX_BUILD_CORES
    '';
    env.NIX_CFLAGS_COMPILE = "-Wno-error";
    buildInputs = [
      pkgs.numactl
    ]
    ++ lib.optionals cudaSupport (
      [
        cudaPackages.cuda_cudart
        cudaPackages.cuda_nvrtc
        cudaPackages.libcublas
      ]
      ++ lib.optionals (cudaPackages ? cudnn) [ cudaPackages.cudnn ]
    );
    requiredSystemFeatures = [ "big-parallel" ];
    passthru = {
      inherit cudaSupport cudaPackages rocmSupport;
      pythonModule = interp;
      cudaCapabilities = if cudaSupport then capabilities else [ ];
    };
    meta = {
      license = lib.licenses.bsd3;
    };
  }
) { }
