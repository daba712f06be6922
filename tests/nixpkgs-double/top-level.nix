# The top-level package set of the double. Each function here takes exactly the argument names that the
# nixpkgs function of the same name takes at the pin (README.md lists the sources), without `...` where
# nixpkgs has none, so an unknown argument fails with Nix's own "called with unexpected argument".
{
  lib,
  system,
  config,
  final,
  mkDerivation,
  # The pin's data (pin.nix beside the pin's default.nix).
  pin,
}:
let
  # nixpkgs: pkgs/build-support/fetchurl. A missing hash does not fail at evaluation there either: it
  # becomes lib.fakeHash and the build fails later (tests check src.outputHash themselves). More than one
  # hash is an evaluation error there ("multiple hashes passed to fetchurl"), and here.
  fetchurl =
    {
      url ? null,
      urls ? [ ],
      hash ? "",
      sha256 ? "",
      name ? null,
      executable ? false,
      postFetch ? "",
      passthru ? { },
      meta ? { },
    }:
    let
      theUrl = if url != null then url else builtins.head urls;
      given = builtins.filter (h: h != "") [
        hash
        sha256
      ];
    in
    if builtins.length given > 1 then
      throw "multiple hashes passed to fetchurl: ${toString given}"
    else
    mkDerivation {
      name = if name != null then name else baseNameOf theUrl;
      url = theUrl;
      outputHashMode = if executable then "recursive" else "flat";
      outputHashAlgo = if hash != "" then null else "sha256";
      outputHash =
        if hash != "" then
          hash
        else if sha256 != "" then
          sha256
        else
          lib.fakeHash;
      inherit passthru meta;
    };

  # nixpkgs: pkgs/build-support/fetchpypi. For wheels the URL is built from these fields alone.
  fetchPypi =
    {
      pname,
      version,
      dist ? "py2.py3",
      python ? "py2.py3",
      abi ? "none",
      platform ? "any",
      format ? "setuptools",
      hash ? "",
      sha256 ? "",
    }:
    let
      file =
        if format == "wheel" then
          "${pname}-${version}-${python}-${abi}-${platform}.whl"
        else
          "${pname}-${version}.tar.gz";
      first = builtins.substring 0 1 pname;
    in
    fetchurl {
      # The double never fetches; the host is a placeholder on purpose.
      url = "https://index.invalid/packages/${if format == "wheel" then dist else "source"}/${first}/${pname}/${file}";
      inherit hash sha256;
    };

  hook =
    name:
    mkDerivation {
      inherit name;
      passthru.isSetupHook = true;
    };

  cudaNames = [
    "cuda_cccl"
    "cuda_cudart"
    "cuda_cupti"
    "cuda_nvcc"
    "cuda_nvml_dev"
    "cuda_nvrtc"
    "cuda_nvtx"
    "cuda_profiler_api"
    "libcublas"
    "libcufft"
    "libcufile"
    "libcurand"
    "libcusolver"
    "libcusparse"
    "libcusparse_lt"
    "cudnn"
    "nccl"
  ]
  ++ pin.cuda.extraNames;
  # Redistributables with split outputs (lib/, include/); nvcc and cccl have one output.
  singleOutput = [
    "cuda_nvcc"
    "cuda_cccl"
  ];
  # A capability outside its release's range (pin.cuda.capabilityRange) fails when a CUDA derivation is
  # instantiated, with nixpkgs' bare message "assertion 'condition' failed"; so does one the table lacks.
  inherit (pin.cuda) capabilityRange;
  capabilityBuilds =
    version: cap:
    let
      range = capabilityRange.${cap} or null;
      min = builtins.elemAt range 0;
      max = builtins.elemAt range 1;
    in
    range != null
    && builtins.compareVersions version min >= 0
    && (max == null || builtins.compareVersions version max <= 0);

  # nixpkgs: cudaPackages.flags (pkgs/development/cuda-modules/_cuda/... flags): one
  # -gencode=arch=compute_XY,code=sm_XY per capability, plus PTX (code=compute_XY) for the last one while
  # cudaForwardCompat is on (its default). nixpkgs' nccl passes it as makeFlags NVCC_GENCODE.
  dropDots = builtins.replaceStrings [ "." ] [ "" ];
  gencodeString =
    capabilities:
    toString (
      map (c: "-gencode=arch=compute_${dropDots c},code=sm_${dropDots c}") capabilities
      ++ lib.optional (capabilities != [ ] && (config.cudaForwardCompat or true)) (
        let
          last = dropDots (lib.last capabilities);
        in
        "-gencode=arch=compute_${last},code=compute_${last}"
      )
    );

  mkCudaPackages =
    version:
    let
      capabilities = config.cudaCapabilities or [ ];
      condition = builtins.all (capabilityBuilds version) capabilities;
      # Forced only with the derivation itself (its drvPath), as in nixpkgs.
      checked = assert condition; "ok";
      versions = pin.cuda.versions.${version} or { };
    in
    lib.genAttrs cudaNames (
      n:
      mkDerivation (
        {
          pname = "cuda${version}-${n}";
          # The package's own version where the pin's data has it, else the release's.
          version = versions.${n} or version;
          # nixpkgs' CUDA redistributables are unfree: without config.allowUnfree they refuse to evaluate.
          meta.license = lib.licenses.nvidiaCudaRedist;
          # In env: flattened into the derivation unforced, so only drvPath forces it.
          env.cudaCapabilitiesChecked = checked;
          outputs =
            if builtins.elem n singleOutput then
              [ "out" ]
            else
              [
                "out"
                "lib"
                "dev"
                "include"
                "static"
                "stubs"
              ];
        }
        # A source build compiles for the configured capabilities: its derivation changes with them.
        // lib.optionalAttrs (builtins.elem n pin.cuda.sourceBuilt) {
          makeFlags = [ "NVCC_GENCODE=${gencodeString capabilities}" ];
        }
      )
    )
    // {
      cudaMajorMinorVersion = version;
      cudaMajorVersion = builtins.head (builtins.splitVersion version);
      autoAddDriverRunpath = hook "auto-add-driver-runpath-hook";
      backendStdenv = final.stdenv;
      # nixpkgs: cudaPackages.flags.cudaCapabilities is config.cudaCapabilities (or the release's default).
      flags.cudaCapabilities = capabilities;
    };

  python = import ./python.nix { inherit lib mkDerivation final pin; };
in
{
  inherit lib config system;
  # nixpkgs exposes the set itself (callPackage-style files may take `pkgs`) and its source tree.
  pkgs = final;
  path = ./.;

  stdenv = {
    hostPlatform = {
      inherit system;
      isLinux = true;
      isDarwin = false;
      isx86_64 = system == "x86_64-linux";
      isAarch64 = system == "aarch64-linux";
    };
    # The compiler wrapper; its `cc` is the compiler itself, whose `lib` output holds libstdc++.
    cc =
      mkDerivation {
        pname = "gcc-wrapper";
        version = "14.3.0";
      }
      // {
        cc = mkDerivation {
          pname = "gcc";
          version = "14.3.0";
          outputs = [
            "out"
            "lib"
          ];
        };
      };
    inherit mkDerivation;
  };

  callPackage =
    fn: args:
    let
      f = if builtins.isFunction fn then fn else import fn;
    in
    f (builtins.intersectAttrs (builtins.functionArgs f) final // args);

  inherit fetchurl fetchPypi;

  autoPatchelfHook = hook "auto-patchelf-hook";
  autoAddDriverRunpath = hook "auto-add-driver-runpath-hook";
  makeWrapper = hook "make-shell-wrapper-hook";
  makeBinaryWrapper = hook "make-binary-wrapper-hook";

  ninja = mkDerivation {
    pname = "ninja";
    version = "1.13.1";
  };
  numactl = mkDerivation {
    pname = "numactl";
    version = "2.0.18";
  };
  bash = mkDerivation {
    pname = "bash";
    version = "5.3";
  };
  coreutils = mkDerivation {
    pname = "coreutils";
    version = "9.8";
  };

  # nixpkgs: pkgs/build-support/trivial-builders (writeShellApplication's full argument list).
  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
      runtimeEnv ? null,
      meta ? { },
      passthru ? { },
      checkPhase ? null,
      excludeShellChecks ? [ ],
      extraShellCheckFlags ? [ ],
      bashOptions ? [
        "errexit"
        "nounset"
        "pipefail"
      ],
      derivationArgs ? { },
      inheritPath ? true,
    }:
    mkDerivation {
      inherit name text meta passthru;
      runtimeInputs = runtimeInputs;
    };

  symlinkJoin =
    {
      name,
      paths,
      preferLocalBuild ? true,
      allowSubstitutes ? false,
      postBuild ? "",
      passthru ? { },
      meta ? { },
      nativeBuildInputs ? [ ],
      buildInputs ? [ ],
    }:
    mkDerivation {
      inherit
        name
        paths
        postBuild
        passthru
        meta
        nativeBuildInputs
        ;
    };

  # nixpkgs: trivial-builders (writeText name text; writeShellScript name text).
  writeText =
    name: text:
    mkDerivation {
      inherit name text;
    };
  writeShellScript =
    name: text:
    mkDerivation {
      inherit name text;
      executable = true;
    };

  runCommand =
    name: env: buildCommand:
    mkDerivation (env // { inherit name buildCommand; });

  python3Packages = final.python3.pkgs;

  # nixpkgs: pkgs/build-support/mkshell (the names sglang-matrix uses; nixpkgs passes the rest through).
  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      buildInputs ? [ ],
      nativeBuildInputs ? [ ],
      shellHook ? "",
    }:
    mkDerivation {
      inherit name packages shellHook;
    };
  nix = mkDerivation {
    pname = "nix";
    version = "2.31.2";
  };
}
# The pin's CUDA sets, Pythons and the names that stand for others (python3, cudaPackages).
// lib.mapAttrs' (key: version: lib.nameValuePair "cudaPackages_${key}" (mkCudaPackages version)) pin.cuda.sets
// builtins.mapAttrs (_: python) pin.pythons
// builtins.mapAttrs (_: target: final.${target}) (pin.cuda.aliases // { python3 = pin.python3; })
# Top-level packages only some pins' doubles model (pin.nix `packages`).
// (pin.packages or (_: { })) { inherit lib mkDerivation; }
# dockerTools and cacert: docker-tools.nix.
// import ./docker-tools.nix { inherit lib mkDerivation system; }
