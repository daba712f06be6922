# Evaluate NixOS modules with the module-system double (module-system.nix, NOT nixpkgs' lib) against the
# mirrored NixOS options (nixos-options.nix), check the assertions as NixOS does, and render each systemd
# service's unit text the way nixpkgs writes it (nixos/lib/systemd-lib.nix: `Environment=` lines of the
# JSON-quoted "NAME=value", one `Key=value` line per list item, booleans as true/false), for the tests.
{
  modules,
  withEnabled ? true,
}:
let
  base = import ../nixpkgs-double/lib.nix;
  lib = import ./module-system.nix { lib = base; };
  # nixpkgs: nixos/lib/utils.nix escapeSystemdExecArg(s): each argument JSON-quoted (systemd's quoting
  # accepts JSON's escapes), with % and $ doubled so systemd expands neither specifiers nor variables.
  utils = {
    escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map (a: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString a))) args);
  };
  evaluated = lib.evalModules {
    modules = [ (import ./nixos-options.nix { inherit withEnabled; }) ] ++ modules;
    specialArgs = { inherit utils; };
  };
  inherit (evaluated) config;
  value = v: if builtins.isBool v then (if v then "true" else "false") else toString v;
  lines = key: v: map (x: "${key}=${value x}") (if builtins.isList v then v else [ v ]);
  section = name: attrs: [ "[${name}]" ] ++ builtins.concatLists (base.mapAttrsToList lines attrs);
  unit = s: builtins.concatStringsSep "\n" (
    section "Unit" ({ Description = s.description; }
      // base.optionalAttrs (s.wants != [ ]) { Wants = builtins.concatStringsSep " " s.wants; }
      // base.optionalAttrs (s.after != [ ]) { After = builtins.concatStringsSep " " s.after; })
    ++ section "Service" s.serviceConfig
    ++ base.mapAttrsToList (n: v: "Environment=${builtins.toJSON "${n}=${v}"}") (base.filterAttrs (_: v: v != null) s.environment)
    ++ [ "" ]
  );
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  firewall = config.networking.firewall.allowedTCPPorts;
  services = builtins.mapAttrs (_: s: {
    inherit (s) environment serviceConfig wantedBy after wants description;
    unit = unit s;
  }) config.systemd.services;
}
