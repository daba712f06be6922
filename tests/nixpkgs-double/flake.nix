{
  # A TEST DOUBLE of nixpkgs, not nixpkgs: see README.md beside this file. The tests put it in place of the
  # real input with `--override-input nixpkgs path:tests/nixpkgs-double`.
  description = "sglang-matrix test double of nixpkgs (not nixpkgs)";
  outputs =
    { self }:
    {
      lib = import ./lib.nix;
    };
}
