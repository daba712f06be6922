{
  # A TEST DOUBLE of nixpkgs at pin B (494ce7fd), not nixpkgs: see README.md beside this file. Its code is
  # shared with the pin-A double in ../nixpkgs-double, so the flake must be read from a tree holding both:
  # `--override-input nixpkgs-0_5_23 'path:tests?dir=nixpkgs-double-0_5_23'` (a plain
  # `path:tests/nixpkgs-double-0_5_23` copies this directory alone, and ../ is then out of reach).
  description = "sglang-matrix test double of nixpkgs at 494ce7fd (not nixpkgs)";
  outputs =
    { self }:
    {
      lib = import ../nixpkgs-double/lib.nix;
    };
}
