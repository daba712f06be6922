# The shared builder every file in pkgs/variants/ calls: finds the variant in matrix.toml (through the
# nixpkgs-free layer), instantiates nixpkgs for it (or takes a memoised instance from the flake) and
# builds it.
{
  # A nixpkgs source tree: a path, or a flake input (the one at the variant's line's pin).
  nixpkgs,
  line,
  python,
  cuda,
  system,
  target,
  # null on a line whose torch is a wheel (no ISAs).
  isa,
  # variant -> instantiated nixpkgs; the flake passes one that shares instances between variants.
  pkgsFor ? null,
}:
let
  sglangLib = import ../lib { };
  matches = builtins.filter (
    v:
    v.line == line
    && v.python == python
    && v.cuda == cuda
    && v.system == system
    && v.target == target
    && v.isa == isa
  ) sglangLib.variants;
  variant =
    if matches == [ ] then
      throw "sglang-matrix: matrix.toml has no variant for line ${line}, Python ${python}, CUDA ${cuda}, ${system}, ${target}, ${if isa == null then "no ISA" else isa}; run `sglang-matrix render`"
    else
      builtins.head matches;
  pkgs = if pkgsFor != null then pkgsFor variant else import ./nixpkgs.nix { inherit nixpkgs variant; };
in
pkgs.callPackage ./sglang-variant.nix {
  inherit variant;
  line = sglangLib.lineOf variant;
  sonames = sglangLib.matrix.sonames;
  sources = builtins.fromJSON (builtins.readFile ./sources.json);
}
