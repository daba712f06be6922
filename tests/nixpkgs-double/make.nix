# The entry point of a nixpkgs test double, shared by the pins: `pin` is a pin's data (pin.nix beside each
# pin's default.nix: CUDA sets, capability table, Python versions and package names, torch), the rest is
# nixpkgs' own entry-point argument list.
pin:
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
        pin
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
