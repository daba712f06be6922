# What a variant gives its user: one environment with bin/python3 (imports sglang, torch and the rest),
# bin/sglang-serve and bin/sglang-resolve-model. Every entry point sets up what FlashInfer's and
# sgl-kernel's runtime JIT needs (CUDA_HOME with nvcc, headers and libraries from the closure) and a
# writable per-user, per-variant FlashInfer cache (its cache key embeds store paths: variants must not
# share one). No PYTHONPATH walk over the closure is needed: python.withPackages already has it all.
{
  lib,
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

  # A CUDA_HOME-shaped tree: bin/nvcc, include/ (cuda_runtime.h, nv/target), lib/ and lib/stubs.
  cudaParts = with cudaPackages; [
    cuda_nvcc
    cuda_cudart
    cuda_cccl
    cuda_nvrtc
    libcublas
  ];
  cudaHome = symlinkJoin {
    name = "sglang-matrix-cuda-home-${variant.cuda}";
    paths = lib.unique (
      lib.concatMap (
        pkg: map (output: pkg.${output}) (builtins.filter (o: o != "static") (pkg.outputs or [ "out" ]))
      ) cudaParts
    );
  };

  cacheDir = "\${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/${variant.longName}";

  # FlashInfer's runtime JIT runs `ninja` from PATH and compiles host code with $CXX (default `c++`);
  # nvcc needs a host compiler it supports: the one nixpkgs' CUDA packages are built with.
  hostCc = cudaPackages.backendStdenv.cc;

  # makeBinaryWrapper (which withPackages uses) cannot expand $HOME at run time, so the entry points are
  # small bash scripts in front of the environment's interpreter.
  launcher =
    name: exec:
    writeShellScript "${variant.name}-${name}" ''
      # ${variant.name}: SGLang runtime environment (sglang-matrix).
      export CUDA_HOME=${cudaHome}
      export CUDA_PATH="$CUDA_HOME"
      export PATH="$CUDA_HOME/bin:${lib.makeBinPath [ ninja hostCc ]}''${PATH:+:$PATH}"
      export CPATH="$CUDA_HOME/include''${CPATH:+:$CPATH}"
      export LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_HOME/lib/stubs''${LIBRARY_PATH:+:$LIBRARY_PATH}"
      : "''${CC:=${hostCc}/bin/cc}" "''${CXX:=${hostCc}/bin/c++}"
      export CC CXX
      # FlashInfer 0.6 keeps its JIT cache under $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer (the seed's
      # FLASHINFER_JIT_DIR is a constant it derives from that, not a variable it reads). Its cache key
      # embeds store paths, so each variant gets its own, writable, per user.
      : "''${FLASHINFER_WORKSPACE_BASE:=${cacheDir}}"
      export FLASHINFER_WORKSPACE_BASE
      # A PYTHONHOME from outside would point this interpreter at another standard library.
      unset PYTHONHOME
      exec ${exec} "$@"
    '';
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
      ;
    inherit (python.pkgs) torch;
  };
  meta = {
    description = "SGLang ${variant.versions.sglang} for ${variant.architecture} (${lib.concatStringsSep ", " variant.gpus}), ${variant.isa}";
    mainProgram = "sglang-serve";
    platforms = [ variant.system ];
    inherit (sglang.meta) license;
  };
}
