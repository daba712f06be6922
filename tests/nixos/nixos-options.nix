# The NixOS options nix/module.nix meets, declared as nixpkgs declares them (NOT NixOS: only these options,
# and no implementation behind them). Names and types from nixpkgs' stored sources nearest the pin (the index
# holds none at 0182a361 itself):
# - systemd.services.<name>: nixos/lib/systemd-unit-options.nix @ 515c8fb59bc189b54fc47113d6248cd45f607f65
#   (commonUnitOptions: description singleLineStr; wantedBy, wants, after, before, requires: listOf
#   unitNameType; unitConfig; serviceOptions: environment attrsOf (nullOr (oneOf [ str path package ])),
#   path, serviceConfig addCheck (attrsOf unitOption) checkService, script lines; unitOption merges lists by
#   concatenation and other values only when equal; checkService refuses a Restart or Type outside
#   systemd's values).
# - networking.firewall.allowedTCPPorts: listOf port (nixos/modules/services/networking/firewall.nix).
# - services.xserver.videoDrivers: listOf str (nixos/modules/services/x11/xserver.nix; nvidia.nix reads
#   `elem "nvidia"` of it: nixos/modules/hardware/video/nvidia.nix @ 026b6010efb33462865bc4ab3004d82bcd0b49ac).
# - hardware.nvidia.datacenter.enable (mkEnableOption) and the read-only hardware.nvidia.enabled, "True if
#   NVIDIA support is enabled": a stored nvidia.nix of 2025-26 (index content 53146301219, commit not
#   returned). Whether `enabled` exists at the pin could not be settled: `withEnabled = false` leaves it out,
#   and the module must then read the other two.
# - assertions: listOf { assertion; message; } (nixos/modules/misc/assertions.nix), checked at the top
#   level as NixOS does (eval.nix).
{ withEnabled ? true }:
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  unitNameType = types.str;
  unitOption = types.unspecified // {
    description = "systemd option";
    merge =
      loc: defs:
      if builtins.isList (builtins.head defs).value then
        builtins.concatLists (map (d: if builtins.isList d.value then d.value else throw "The definitions for systemd unit options should be either all lists, representing repeatable options, or all non-lists, but for the option ${builtins.concatStringsSep "." loc}, the definitions are a mix of list and non-list") defs)
      else
        types.unspecified.merge loc defs;
  };
  oneOfValues = name: values: cfg: !(cfg ? ${name}) || builtins.elem cfg.${name} values;
  # nixpkgs' checkUnitConfig looks through an mkOverride (mkForce, mkDefault) at a value before checking it.
  checkService =
    attrs:
    let
      cfg = builtins.mapAttrs (_: v: if (v._type or "") == "override" then v.content else v) attrs;
    in
    oneOfValues "Type" [ "exec" "simple" "forking" "oneshot" "dbus" "notify" "notify-reload" "idle" ] cfg
    && oneOfValues "Restart" [ "no" "on-success" "on-failure" "on-abnormal" "on-abort" "on-watchdog" "always" ] cfg;
  serviceOptions = {
    options = {
      enable = mkOption { type = types.bool; default = true; };
      description = mkOption { type = types.singleLineStr; default = ""; };
      wantedBy = mkOption { type = types.listOf unitNameType; default = [ ]; };
      requiredBy = mkOption { type = types.listOf unitNameType; default = [ ]; };
      wants = mkOption { type = types.listOf unitNameType; default = [ ]; };
      requires = mkOption { type = types.listOf unitNameType; default = [ ]; };
      after = mkOption { type = types.listOf unitNameType; default = [ ]; };
      before = mkOption { type = types.listOf unitNameType; default = [ ]; };
      unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      path = mkOption { type = types.listOf (types.oneOf [ types.package types.str ]); default = [ ]; };
      serviceConfig = mkOption {
        type = types.addCheck (types.attrsOf unitOption) checkService;
        default = { };
      };
      script = mkOption { type = types.lines; default = ""; };
      preStart = mkOption { type = types.lines; default = ""; };
    };
  };
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    systemd.services = mkOption { type = types.attrsOf (types.submodule serviceOptions); default = { }; };
    networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    services.xserver.videoDrivers = mkOption { type = types.listOf types.str; default = [ "modesetting" "fbdev" ]; };
    hardware.nvidia =
      {
        datacenter.enable = lib.mkEnableOption "Data Center drivers for NVIDIA cards on a NVLink topology";
      }
      // lib.optionalAttrs withEnabled {
        enabled = mkOption {
          readOnly = true;
          type = types.bool;
          default = builtins.elem "nvidia" config.services.xserver.videoDrivers || config.hardware.nvidia.datacenter.enable;
          description = "True if NVIDIA support is enabled";
        };
      };
  };
}
