# The torch-involving python packages at pin B: pin A's models (../nixpkgs-double/python-modelled.nix,
# whose sources are the stored copies of this era as well) with compressed-tensors replaced by the
# expression of the pin-B era. compressed-tensors 0.18.0 is probable at the pin (NixOS/nixpkgs#564049
# 0.17.1 -> 0.18.0, opened 2026-09-16, merged); its expression was not read, so this models the stored
# 0.17.1 one (pkgs/development/python-modules/compressed-tensors/default.nix, content id 54851451431):
# buildPythonPackage (finalAttrs: ...), pyproject; dependencies frozendict loguru pydantic torch
# transformers; doCheck unset (checks on); nativeCheckInputs accelerate nbconvert nbformat pytestCheckHook
# writableTmpDirAsHomeHook: accelerate depends on torch, so the checks pull a second torch consumer in.
args@{ pfinal, buildPythonPackage, ... }:
let
  p = pfinal;
in
import ../nixpkgs-double/python-modelled.nix args
// {
  compressed-tensors = buildPythonPackage {
    pname = "compressed-tensors";
    version = "0-double";
    pyproject = true;
    dependencies = [
      p.frozendict
      p.loguru
      p.pydantic
      p.torch
      p.transformers
    ];
    nativeCheckInputs = [
      p.accelerate
      p.nbconvert
      p.nbformat
      p.pytestCheckHook
      p.writableTmpDirAsHomeHook
    ];
    pythonImportsCheck = [ "compressed_tensors" ];
  };
}
