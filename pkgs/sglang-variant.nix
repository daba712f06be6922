# One variant: nixpkgs' Python with the variant's package set, SGLang from it, and the environment
# users run (pkgs/sglang-env.nix; the bare package is its passthru.sglang).
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
  runtime = python.pkgs.callPackage ./runtime-scripts.nix { };
in
pkgs.callPackage ./sglang-env.nix {
  inherit python variant runtime;
  inherit (python.pkgs) sglang;
}
