# torch 2.9.1 for the double: the argument list of nixpkgs'
# pkgs/development/python-modules/torch/source/default.nix at the pin, exactly (no `...`), and the
# attributes sglang-matrix's override touches (preConfigure with TORCH_CUDA_ARCH_LIST, preBuild's
# MAX_JOBS line, env.NIX_CFLAGS_COMPILE, big-parallel, split outputs, passthru.cudaCapabilities).
#
# Derived as nixpkgs derives them (FACTS.md; stored copies of source/default.nix near the pin):
#   - name: buildPythonPackage's, late-bound: "python3.12-${finalAttrs.pname}-${finalAttrs.version}";
#   - passthru.cudaCapabilities = lists.intersectLists cudaFlags.cudaCapabilities
#     supportedTorchCudaCapabilities: the torch list's order and duplicates survive, and at the pin that
#     list holds "10.0" twice (FACTS.md, nixpkgs 6b516b42). Which neighbour the second "10.0" has is not
#     established; any place between "9.0" and "12.0" gives the same result for every capability set here;
#   - meta.broken when cudaSupport and the CUDA major is not 11 or 12 (FACTS.md: the pin's expression;
#     a later stored copy of a 2.9.0 expression also allows 13, so a CUDA 13 line needs checking again);
#     nixpkgs refuses to evaluate a broken package without config.allowBroken;
#   - env.NIX_CFLAGS_COMPILE: "-Wno-error", and on aarch64 nixpkgs adds flags of its own that could not be
#     established here. The double adds a marker flag there, so an override that replaces
#     NIX_CFLAGS_COMPILE instead of extending it is caught (strict: the real flag is unknown).
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
    # torch/utils/cpp_extension.py's list at v2.9.1 (as nixpkgs' vllm expression copies it), with the pin's
    # duplicate "10.0", and the +PTX forms.
    real = [
      "3.5"
      "3.7"
      "5.0"
      "5.2"
      "5.3"
      "6.0"
      "6.1"
      "6.2"
      "7.0"
      "7.2"
      "7.5"
      "8.0"
      "8.6"
      "8.7"
      "8.9"
      "9.0"
      "9.0a"
      "10.0"
      "10.0"
      "10.0a"
      "10.3"
      "10.3a"
      "11.0"
      "11.0a"
      "12.0"
      "12.0a"
      "12.1"
      "12.1a"
    ];
    supportedTorchCudaCapabilities = real ++ map (x: "${x}+PTX") real;
    supportedCudaCapabilities = lib.intersectLists cudaPackages.flags.cudaCapabilities supportedTorchCudaCapabilities;
    gpuTargetString = builtins.concatStringsSep ";" (
      if gpuTargets != [ ] then
        gpuTargets
      else if supportedCudaCapabilities == [ ] then
        throw "No supported GPU targets specified. Requested GPU targets: ${toString cudaPackages.flags.cudaCapabilities}"
      else
        supportedCudaCapabilities
    );
    broken = cudaSupport && !(builtins.elem cudaPackages.cudaMajorVersion [ "11" "12" ]);
    isAarch64 = pkgs.stdenv.hostPlatform.isAarch64;
  in
  mkDerivation (finalAttrs: {
    pname = "torch";
    version = "2.9.1";
    # As buildPythonPackage names it: from the final pname and version.
    name = "python${interp.pythonVersion}-${finalAttrs.pname}-${finalAttrs.version}";
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
    env.NIX_CFLAGS_COMPILE = toString (
      [ "-Wno-error" ] ++ lib.optional isAarch64 "-DNIXPKGS_DOUBLE_AARCH64_FLAGS_NOT_ESTABLISHED"
    );
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
      cudaCapabilities = if cudaSupport then supportedCudaCapabilities else [ ];
    };
    meta = {
      license = lib.licenses.bsd3;
      inherit broken;
    };
  })
) { }
