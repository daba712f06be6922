# sglang-serve and sglang-resolve-model: the standalone modules of tools/sglang_matrix (stdlib and click
# only), installed as the namespace package `sglang_matrix` so `python -m sglang_matrix.serve` works inside
# a variant's environment without the rest of the tool. sglang-serve's preflight needs the host package
# (driver search, probing, the record, the checks: standard library only) and errors.py; tests/test_serve.py
# follows serve.py's imports and checks that every module it needs is listed here.
{
  lib,
  buildPythonPackage,
  python,
  click,
}:
let
  toolDir = ../tools/sglang_matrix;
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
  # The modules of tools/sglang_matrix it installs: one list, which `sglang-matrix rehearse` installs too
  # and tests/test_serve.py checks against serve.py's imports.
  modules = builtins.fromJSON (builtins.readFile ./runtime-modules.json);
in
buildPythonPackage {
  pname = "sglang-matrix-runtime";
  inherit (pyproject.project) version;
  format = "other";

  src = lib.fileset.toSource {
    root = toolDir;
    fileset = lib.fileset.unions (map (m: toolDir + "/${m}") modules);
  };

  installPhase = ''
    runHook preInstall
    for module in ${lib.escapeShellArgs modules}; do
      install -Dm644 "$module" "$out/${python.sitePackages}/sglang_matrix/$module"
    done
    runHook postInstall
  '';

  dependencies = [ click ];
  pythonImportsCheck = [
    "sglang_matrix.serve"
    "sglang_matrix.resolve_model"
    "sglang_matrix.host.preflight"
  ];

  meta = {
    description = "sglang-serve and sglang-resolve-model: environment-configured SGLang launcher";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
