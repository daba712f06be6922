# A TEST DOUBLE of nixpkgs (not nixpkgs). It evaluates sglang-matrix's flake and pkgs/ offline, and its
# functions accept exactly the argument names that nixpkgs accepts at the pinned revision (see README.md for
# the sources), so a misspelt override or argument fails here as it would for real. Derivations are
# `builtins.derivation`s whose attributes carry what was asked for; nothing here can be built usefully.
{
  system,
  config ? { },
  overlays ? [ ],
  # Accepted for parity with nixpkgs' entry point; unused here.
  crossSystem ? null,
  localSystem ? null,
  crossOverlays ? [ ],
}:
let
  lib = import ./lib.nix;
  knownConfig = [
    "allowUnfree"
    "cudaSupport"
    "cudaCapabilities"
    "cudaForwardCompat"
    "rocmSupport"
    "allowBroken"
  ];
  badConfig = builtins.filter (n: !(builtins.elem n knownConfig)) (builtins.attrNames config);
  checkedConfig =
    if badConfig != [ ] then
      throw "nixpkgs double: unknown config option(s) ${toString badConfig} (known here: ${toString knownConfig})"
    else
      config;

  mkDerivation = import ./mk-derivation.nix { inherit lib system; } checkedConfig;

  base =
    final:
    import ./top-level.nix {
      inherit
        lib
        system
        final
        mkDerivation
        ;
      config = checkedConfig;
    };

  fix =
    f:
    let
      x = f x;
    in
    x;
  applyOverlays = final: builtins.foldl' (prev: overlay: prev // overlay final prev) (base final) overlays;
in
# Checked before anything is looked up. (nixpkgs' own config handling is more permissive; the double is
# strict so that a misspelt option cannot go unnoticed.)
builtins.seq checkedConfig (fix applyOverlays)
