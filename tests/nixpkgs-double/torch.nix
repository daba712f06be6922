# torch for the double (the pin's version and argument list come from its pin.nix `torch`): the argument
# list of nixpkgs' pkgs/development/python-modules/torch/source/default.nix at the pin, exactly, and the
# attributes sglang-matrix's override touches (preConfigure with TORCH_CUDA_ARCH_LIST, preBuild's
# MAX_JOBS line, env.NIX_CFLAGS_COMPILE, big-parallel, split outputs, passthru.cudaCapabilities).
#
# Derived as nixpkgs derives them (FACTS.md; stored copies of source/default.nix near the pin):
#   - name: buildPythonPackage's, late-bound: "python3.12-${finalAttrs.pname}-${finalAttrs.version}";
#   - passthru.cudaCapabilities = lists.intersectLists cudaFlags.cudaCapabilities
#     supportedTorchCudaCapabilities: the torch list's order and duplicates survive, and at the pin that
#     list holds "10.0" twice (FACTS.md, nixpkgs 6b516b42). Which neighbour the second "10.0" has is not
#     established; any place between "9.0" and "12.0" gives the same result for every capability set here;
#   - meta.broken when cudaSupport and the CUDA major is not one of spec.cudaMajors (pin A: 11 or 12,
#     FACTS.md: the pin's expression);
#     nixpkgs refuses to evaluate a broken package without config.allowBroken;
#   - env.NIX_CFLAGS_COMPILE: "-Wno-error", and on aarch64 nixpkgs adds flags of its own that could not be
#     established here. The double adds a marker flag there, so an override that replaces
#     NIX_CFLAGS_COMPILE instead of extending it is caught (strict: the real flag is unknown).
{
  mkDerivation,
  makeOverridable,
  pkgs,
  interp,
  # The pin's torch: version, argNames (the expression's arguments, no `...`), cudaMajors, duplicateTen.
  spec,
}:
# The arguments are checked against spec.argNames, with Nix's own words for a name the expression lacks.
# Only those the body reads get values; the others are accepted and ignored.
makeOverridable (
  args:
  let
    unknown = builtins.filter (n: !(builtins.elem n spec.argNames)) (builtins.attrNames args);
    config = args.config or pkgs.config;
    cudaSupport = args.cudaSupport or (config.cudaSupport or false);
    cudaPackages = args.cudaPackages or pkgs.cudaPackages;
    rocmSupport = args.rocmSupport or false;
    gpuTargets = args.gpuTargets or [ ];
  in
  if unknown != [ ] then
    throw "function 'anonymous lambda' called with unexpected argument '${builtins.head unknown}'"
  else
  let
    inherit (pkgs) lib;
    # torch/utils/cpp_extension.py's list at v2.9.1 (as nixpkgs' vllm expression copies it), with the pin's
    # duplicate "10.0" where it has one, and the +PTX forms.
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
    ]
    # The pin-A list holds "10.0" twice (pin.nix says why).
    ++ lib.optional spec.duplicateTen "10.0"
    ++ [
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
    broken = cudaSupport && !(builtins.elem cudaPackages.cudaMajorVersion spec.cudaMajors);
    isAarch64 = pkgs.stdenv.hostPlatform.isAarch64;
  in
  mkDerivation (finalAttrs: {
    pname = "torch";
    inherit (spec) version;
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
