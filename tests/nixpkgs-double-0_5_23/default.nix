# A TEST DOUBLE of nixpkgs at pin B (494ce7fd23ff6a5dff39e1fb11e9b6f2ac74bf25, nixos-unstable 2026-10-05),
# not nixpkgs: the pin-A double's code (../nixpkgs-double/make.nix and what it imports) applied to this
# pin's data (pin.nix). README.md says what differs from pin A and on what evidence.
import ../nixpkgs-double/make.nix (import ./pin.nix)
