# One variant: nixpkgs' Python with the variant's package set, and SGLang from it.
{
  lib,
  pkgs,
  variant,
  line,
  sonames,
  sources,
}:
let
  pythonAttr = "python${lib.replaceStrings [ "." ] [ "" ] variant.python}";
  # `self = python` so that python.pkgs and python.withPackages see the overrides too.
  python = pkgs.${pythonAttr}.override {
    self = python;
    packageOverrides = import ./python-packages.nix {
      inherit
        lib
        pkgs
        variant
        line
        sonames
        sources
        ;
    };
  };
  sglang = python.pkgs.sglang;
in
# The variant's Python, its spec and its torch ride along, for composing and for tests.
sglang
// {
  inherit python variant;
  inherit (python.pkgs) torch;
}
