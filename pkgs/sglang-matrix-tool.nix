# The sglang-matrix command itself (render, lock, audit, smoke, plan, which), for `nix run .#render`,
# the dev shell and the flake's checks. It needs no CUDA and no torch.
{
  lib,
  python3Packages,
}:
let
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../tools
    ];
  };
in
python3Packages.buildPythonApplication {
  pname = "sglang-matrix";
  inherit (pyproject.project) version;
  pyproject = true;
  inherit src;
  build-system = [ python3Packages.setuptools ];
  dependencies = with python3Packages; [
    click
    jinja2
    packaging
    pyelftools
    rich
  ];
  pythonImportsCheck = [ "sglang_matrix.cli" ];
  meta = {
    description = "One matrix spec for per-SM, per-ISA Nix builds of SGLang";
    license = lib.licenses.mit;
    mainProgram = "sglang-matrix";
  };
}
