# sglang-serve and sglang-resolve-model: the two standalone modules of tools/sglang_matrix (stdlib and
# click only), installed as the namespace package `sglang_matrix` so `python -m sglang_matrix.serve`
# works inside a variant's environment without the rest of the tool.
{
  lib,
  buildPythonPackage,
  python,
  click,
}:
let
  toolDir = ../tools/sglang_matrix;
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
in
buildPythonPackage {
  pname = "sglang-matrix-runtime";
  inherit (pyproject.project) version;
  format = "other";

  src = lib.fileset.toSource {
    root = toolDir;
    fileset = lib.fileset.unions [
      (toolDir + "/serve.py")
      (toolDir + "/resolve_model.py")
    ];
  };

  installPhase = ''
    runHook preInstall
    install -Dm644 -t "$out/${python.sitePackages}/sglang_matrix" serve.py resolve_model.py
    runHook postInstall
  '';

  dependencies = [ click ];
  pythonImportsCheck = [
    "sglang_matrix.serve"
    "sglang_matrix.resolve_model"
  ];

  meta = {
    description = "sglang-serve and sglang-resolve-model: environment-configured SGLang launcher";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
