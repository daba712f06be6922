# A TEST DOUBLE of nixpkgs (not nixpkgs). It evaluates sglang-matrix's flake and pkgs/ offline, and its
# functions accept exactly the argument names that nixpkgs accepts at the pinned revision (see README.md for
# the sources), so a misspelt override or argument fails here as it would for real. Derivations are
# `builtins.derivation`s whose attributes carry what was asked for; nothing here can be built usefully.
# This pin's data (pin.nix) applied to the entry point all pins share (make.nix).
import ./make.nix (import ./pin.nix)
