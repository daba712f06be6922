# CPU instruction sets: compiler flags and the Nix systems each fits, from matrix.toml's [isas].
{ matrix }:
let
  isa =
    name: matrix.isas.${name} or (throw "matrix.toml: unknown ISA ${name}; known: ${toString (builtins.attrNames matrix.isas)}");
in
{
  flags = name: (isa name).flags;
  fits = name: system: builtins.elem system (isa name).systems;
  # The flags as one string, as they go into CFLAGS and CXXFLAGS.
  flagString = name: builtins.concatStringsSep " " (isa name).flags;
  # The -march name a builder must advertise as the system feature gccarch-<name> (null: none).
  gccArch = name: (isa name).gcc-arch or null;
}
