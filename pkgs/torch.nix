# nixpkgs' torch, built from source for one variant: its GPU targets, its CPU ISA, a capped MAX_JOBS.
{
  lib,
  torch,
  variant,
}:
let
  flags = lib.concatStringsSep " " variant.cflags;
  # Code built with the ISA's flags dies with SIGILL on a CPU without them, and torch's own build imports
  # it (pythonImportsCheck): only a builder that advertises gccarch-<march> (nixpkgs' convention) may
  # take it. lib/ and tools/sglang_matrix/variants.py carry the name from matrix.toml's [isas].
  gccFeatures = lib.optional ((variant.gccArch or null) != null) "gccarch-${variant.gccArch}";
in
(torch.override {
  cudaSupport = true;
  # Becomes TORCH_CUDA_ARCH_LIST verbatim.
  gpuTargets = variant.capabilities;
}).overrideAttrs
  (old: {
    # A tag in the name, so that store paths say which variant a torch is for. Only pname: at the pin
    # mk-python-derivation builds `name` inside stdenv.mkDerivation (finalAttrs: ...) from
    # finalAttrs.pname, so this pname reaches the name ("python3.12-torch-sm90-avx512-2.9.1"), and setting
    # `name` from old.name as well would repeat the tag (old.name is already late-bound to this pname).
    pname = "${old.pname}-${variant.target}-${variant.isa}";

    env =
      (old.env or { })
      // lib.optionalAttrs (!variant.cudnn) {
        # nixpkgs has no cuDNN switch: cudnn is an input whenever cudaPackages has it. USE_CUDNN=0 in the
        # build environment is what turns it off in torch's CMake (setup.py passes USE_* on), so nothing
        # links it and it drops out of the runtime closure.
        USE_CUDNN = "0";
      }
      // lib.optionalAttrs (!(variant.cusparselt or true)) {
        # Likewise for cuSPARSELt (libcusparse_lt is always among nixpkgs' buildInputs): torch's CMake
        # option USE_CUSPARSELT. Only 2:4 sparse matmuls use it (torch._cslt_sparse_mm).
        USE_CUSPARSELT = "0";
      }
      // lib.optionalAttrs ((variant.torchNvccFlags or [ ]) != [ ]) {
        # torch's CMakeLists appends $TORCH_NVCC_FLAGS to CMAKE_CUDA_FLAGS; nixpkgs sets none. Without
        # `-Xfatbin -compress-all` nvcc stores cubins uncompressed (PTX only is compressed by default),
        # which makes a one-SM torch's device code about five times what pip's build ships.
        TORCH_NVCC_FLAGS = lib.concatStringsSep " " (
          lib.optional (old.env ? TORCH_NVCC_FLAGS) old.env.TORCH_NVCC_FLAGS ++ variant.torchNvccFlags
        );
      };

    # ISA flags for torch's own C/C++ (the CUDA device code is chosen by gpuTargets).
    preConfigure = (old.preConfigure or "") + ''
      export CFLAGS="''${CFLAGS:-} ${flags}"
      export CXXFLAGS="''${CXXFLAGS:-} ${flags}"
    '';

    # torch's own preBuild runs `export MAX_JOBS=$NIX_BUILD_CORES` (after preConfigure), so the cap has to
    # come after it. min(cores, cap): `--cores N` lowers it without changing this derivation.
    preBuild = (old.preBuild or "") + ''
      cores=''${NIX_BUILD_CORES:-1}
      if [ "$cores" -le 0 ]; then cores=$(nproc); fi
      export MAX_JOBS=$(( cores < ${toString variant.maxJobsCap} ? cores : ${toString variant.maxJobsCap} ))
      echo "sglang-matrix: MAX_JOBS=$MAX_JOBS (cores $cores, cap ${toString variant.maxJobsCap})"
    '';

    requiredSystemFeatures = lib.unique (
      (old.requiredSystemFeatures or [ ]) ++ [ "big-parallel" ] ++ gccFeatures
    );

    passthru = (old.passthru or { }) // {
      sglangMatrix = {
        inherit (variant) target isa capabilities cflags;
        systemFeatures = gccFeatures;
      };
    };
  })
