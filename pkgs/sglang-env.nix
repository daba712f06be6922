# What a variant gives its user: one environment with bin/python3 (imports sglang, torch and the rest),
# bin/sglang-serve and bin/sglang-resolve-model. Every entry point sets up what FlashInfer's and
# sgl-kernel's runtime JIT needs (CUDA_HOME with nvcc, headers and libraries from the closure) and a
# writable per-user, per-variant FlashInfer cache (its cache key embeds store paths: variants must not
# share one), exposes the host's NVIDIA driver libraries on any Linux host (pkgs/launcher.bash) and carries
# the record sglang-serve's preflight reads. No PYTHONPATH walk over the closure is needed:
# python.withPackages already has it all.
{
  lib,
  callPackage,
  runCommand,
  symlinkJoin,
  writeShellScript,
  writeText,
  ninja,
  cudaPackages,
  python,
  sglang,
  runtime,
  variant,
}:
let
  pythonEnv = python.withPackages (_: [
    sglang
    runtime
  ]);

  # What FlashInfer's and sgl-kernel's runtime JIT compile against: pkgs/cuda-home.nix.
  cudaHome = callPackage ./cuda-home.nix { inherit cudaPackages variant; };

  # FlashInfer's runtime JIT runs `ninja` from PATH and compiles host code with $CXX (default `c++`);
  # nvcc needs a host compiler it supports: the one nixpkgs' CUDA packages are built with.
  hostCc = cudaPackages.backendStdenv.cc;

  # The driver search every entry point runs first (sglang_matrix/host/driver.py: the standard library
  # only, run by `python -I -S` so it adds little to start-up; bench/launcher measures it). Byte-compiled
  # here: a store path is read-only, so a start would otherwise compile it anew every time. The build's
  # SOURCE_DATE_EPOCH makes compileall write hash-checked .pyc files, valid whatever the store's mtimes.
  driverSearch = runCommand "sglang-matrix-driver-search" { } ''
    mkdir -p $out
    cp ${../tools/sglang_matrix/host/driver.py} $out/driver.py
    ${python.interpreter} -m compileall -q $out
  '';

  # What sglang-serve's preflight checks against without the spec (sglang_matrix/host/record.py): this
  # variant, the variants of its release line and system (to name the one that fits) and NVIDIA's driver
  # table. A variant without an ISA (a wheel-torch line) runs on any CPU of its system.
  sglangLib = import ../lib { };
  record = writeText "${variant.longName}-record.json" (
    builtins.toJSON {
      schema = 1;
      variant = variant.longName;
      cudaDrivers = sglangLib.matrix.cuda-drivers or null;
      variants = map (v: {
        inherit (v)
          name
          longName
          line
          system
          target
          isa
          python
          cuda
          capabilities
          ;
        cpuFeatures = if v.isa == null then [ ] else sglangLib.matrix.isas.${v.isa}.cpu-features;
      }) (builtins.filter (v: v.system == variant.system && v.line == variant.line) sglangLib.variants);
    }
  );

  # makeBinaryWrapper (which withPackages uses) cannot expand $HOME at run time, so the entry points are
  # small bash scripts in front of the environment's interpreter. Their body is pkgs/launcher.bash, a
  # file of its own so that tests run the very script users run (tests/host_fixtures.py fills the
  # placeholders the same way).
  placeholders = {
    variant = variant.name;
    longName = variant.longName;
    cudaHome = "${cudaHome}";
    binPath = lib.makeBinPath [
      ninja
      hostCc
    ];
    hostCc = "${hostCc}";
    python = python.interpreter;
    driverSearch = "${driverSearch}";
    record = "${record}";
    # Appended to the line that exposes the driver: more variables that name its directory. pip's triton
    # (a wheel of the 0.5.23 line) finds libcuda through TRITON_LIBCUDA_PATH, else `/sbin/ldconfig -p`,
    # which NixOS does not have (nixpkgs' own triton is patched instead). Empty where triton is nixpkgs',
    # so those launchers stay byte for byte as they were.
    driverExports = lib.optionalString (variant.wheels ? triton) ''

      # pip's triton finds libcuda here, not through /sbin/ldconfig (absent on NixOS).
      export TRITON_LIBCUDA_PATH="$_sglang_matrix_driver"'';
    # Appended to the record's line: launch defaults the variant needs ([[lines.X.serve-defaults]] in
    # matrix.toml), each kept when the user has set it. Empty for the variants without any (0.5.9's), so
    # their launchers stay byte for byte as they were.
    serveDefaults = lib.concatStrings (
      lib.mapAttrsToList (name: value: ''

        [ -n "''${${name}:-}" ] || ${name}=${lib.escapeShellArg value}
        export ${name}'') (variant.serveDefaults or { })
    );
  };
  launcher =
    name: exec:
    writeShellScript "${variant.name}-${name}" (
      builtins.replaceStrings (map (p: "@${p}@") (builtins.attrNames placeholders ++ [ "exec" ])) (
        builtins.attrValues placeholders ++ [ exec ]
      ) (builtins.readFile ./launcher.bash)
    );
  # The variant's spec, for `sglang-matrix smoke` and for people: what this environment was built as.
  variantJson = writeText "${variant.longName}.json" (builtins.toJSON variant);

  interpreter = "${pythonEnv}/bin/${python.executable}";
  launchers = builtins.mapAttrs launcher {
    python3 = interpreter;
    python = interpreter;
    ${python.executable} = interpreter;
    sglang-serve = "${interpreter} -m sglang_matrix.serve";
    sglang-resolve-model = "${interpreter} -m sglang_matrix.resolve_model";
  };
in
symlinkJoin {
  name = variant.longName;
  paths = [ pythonEnv ];
  postBuild = ''
    rm -f $out/bin/python*
    ${lib.concatStringsSep "\n" (
      lib.mapAttrsToList (name: script: "ln -s ${script} $out/bin/${name}") launchers
    )}
    mkdir -p $out/nix-support
    ln -s ${variantJson} $out/nix-support/sglang-matrix-variant.json
  '';
  passthru = {
    inherit
      python
      pythonEnv
      sglang
      variant
      cudaHome
      launchers
      record
      ;
    inherit (python.pkgs) torch;
  };
  meta = {
    description = "SGLang ${variant.versions.sglang} for ${variant.architecture} (${lib.concatStringsSep ", " variant.gpus}), ${
      if variant.isa == null then "any ${variant.system} CPU" else variant.isa
    }";
    mainProgram = "sglang-serve";
    platforms = [ variant.system ];
    inherit (sglang.meta) license;
  };
}
