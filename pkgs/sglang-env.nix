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

  # makeBinaryWrapper (which withPackages uses) cannot expand $HOME at run time, so the entry points are
  # small bash scripts in front of the environment's interpreter.
  launcher =
    name: exec:
    writeShellScript "${variant.name}-${name}" ''
      # ${variant.name}: SGLang runtime environment (sglang-matrix).
      export CUDA_HOME=${cudaHome}
      export CUDA_PATH="$CUDA_HOME"
      export PATH="$CUDA_HOME/bin''${PATH:+:$PATH}"
      export CPATH="$CUDA_HOME/include''${CPATH:+:$CPATH}"
      export LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_HOME/lib/stubs''${LIBRARY_PATH:+:$LIBRARY_PATH}"
      : "''${FLASHINFER_JIT_DIR:=${cacheDir}/flashinfer-jit}"
      export FLASHINFER_JIT_DIR
      # A PYTHONHOME from outside would point this interpreter at another standard library.
      unset PYTHONHOME
      exec ${exec} "$@"
    '';
  # The variant's spec, for `sglang-matrix smoke` and for people: what this environment was built as.
  variantJson = writeText "${variant.longName}.json" (builtins.toJSON variant);

  interpreter = "${pythonEnv}/bin/${python.executable}";
  entryPoints = {
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
      lib.mapAttrsToList (name: exec: "ln -s ${launcher name exec} $out/bin/${name}") entryPoints
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
