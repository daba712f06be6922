# Pin A's data (0182a361, 2026-02-17, the 0.5.9 line), read by the code all pins share (make.nix,
# top-level.nix, python.nix, torch.nix). README.md says where each value comes from.
{
  rev = "0182a361324364ae3f436a63005877674cf45efb";
  cuda = {
    # cudaPackages_<key> = that CUDA release (FACTS.md: the sets the pin has that sglang-matrix reaches).
    sets = {
      "12_6" = "12.6";
      "12_8" = "12.8";
      "12_9" = "12.9";
      "13_0" = "13.0";
    };
    # Top-level names that are other names' sets.
    aliases = {
      cudaPackages = "cudaPackages_12_8";
    };
    # Per-package versions are not modelled at this pin: every package carries its release's version.
    versions = { };
    # Packages beyond the shared list (top-level.nix) and packages built from source with the flags'
    # gencode. nccl is a source build in nixpkgs at this pin too, but the pin-A double has always given it
    # the redistributables' shape; kept so that pin A's drvPaths do not move.
    extraNames = [ ];
    sourceBuilt = [ ];
    # The CUDA releases that can compile each capability (nixpkgs: pkgs/development/cuda-modules/_cuda/db/
    # bootstrap/cuda.nix at the pin, as FACTS.md records it): [ min max ], max inclusive, null = none. The
    # "a"/"f" forms and Jetson's are not modelled here: a capability the double does not know fails.
    capabilityRange = {
      "6.1" = [ "10.0" "12.9" ];
      "7.0" = [ "10.0" "12.9" ];
      "7.5" = [ "10.0" null ];
      "8.0" = [ "11.2" null ];
      "8.6" = [ "11.2" null ];
      "8.9" = [ "11.8" null ];
      "9.0" = [ "11.8" null ];
      "10.0" = [ "12.7" null ];
      "10.3" = [ "12.9" null ];
      "12.0" = [ "12.8" null ];
      "12.1" = [ "12.9" null ];
    };
  };
  pythons = {
    python312 = {
      version = "3.12.12";
      pythonVersion = "3.12";
    };
    python313 = {
      version = "3.13.9";
      pythonVersion = "3.13";
    };
  };
  python3 = "python313";
  pythonNames = import ./python-names.nix;
  pythonModelled = import ./python-modelled.nix;
  # torch.nix: nixpkgs' pkgs/development/python-modules/torch/source/default.nix at the pin (2.9.1).
  torch = {
    version = "2.9.1";
    # The expression's arguments, exactly (no `...`), as FACTS.md lists them for 2.9.1.
    argNames = [
      "stdenv"
      "lib"
      "fetchFromGitHub"
      "fetchFromGitLab"
      "git-unroll"
      "buildPythonPackage"
      "python"
      "runCommand"
      "writeShellScript"
      "config"
      "cudaSupport"
      "cudaPackages"
      "autoAddDriverRunpath"
      "effectiveMagma"
      "magma"
      "magma-hip"
      "magma-cuda-static"
      "useSystemNccl"
      "MPISupport"
      "mpi"
      "buildDocs"
      "targetPackages"
      "callPackage"
      "cmake"
      "symlinkJoin"
      "which"
      "pybind11"
      "pkg-config"
      "removeReferencesTo"
      "openssl"
      "numactl"
      "llvmPackages"
      "astunparse"
      "binutils"
      "expecttest"
      "filelock"
      "fsspec"
      "hypothesis"
      "jinja2"
      "networkx"
      "packaging"
      "psutil"
      "pyyaml"
      "requests"
      "sympy"
      "types-dataclasses"
      "typing-extensions"
      "tritonSupport"
      "triton"
      "_tritonEffective"
      "triton-cuda"
      "mklDnnSupport"
      "blas"
      "ninja"
      "pillow"
      "six"
      "tensorboard"
      "protobuf"
      "rocmSupport"
      "rocmPackages"
      "gpuTargets"
      "vulkanSupport"
      "vulkan-headers"
      "vulkan-loader"
      "shaderc"
    ];
    # brokenConditions "Unsupported CUDA version": the CUDA majors the expression accepts (FACTS.md).
    cudaMajors = [
      "11"
      "12"
    ];
    # At this pin nixpkgs' supportedTorchCudaCapabilities holds "10.0" twice (FACTS.md, nixpkgs 6b516b42).
    duplicateTen = true;
  };
}
