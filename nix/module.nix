# NixOS module: services.sglang.instances.<name>, one systemd service `sglang-<name>` per instance, running a
# variant's own `sglang-resolve-model` then `sglang-serve` (the seed runtime's chain), configured through the
# SGLANG_* variables sglang-serve reads (README, "Using a variant").
#
#   imports = [ inputs.sglang-matrix.nixosModules.default ];
#   services.xserver.videoDrivers = [ "nvidia" ];   # or hardware.nvidia.datacenter.enable = true
#   services.sglang.instances.chat = {
#     package = inputs.sglang-matrix.packages.x86_64-linux.sglang-sm90-avx512;
#     model = "Qwen/Qwen2.5-7B-Instruct";
#     openFirewall = true;
#   };
#
# The service runs as a dynamic user with its Hugging Face cache, FlashInfer's JIT cache and the resolved
# model in its state directory (/var/lib/sglang/<name>), a read-only system (ProtectSystem=strict), a
# private /tmp, no privilege gain, and no device but the NVIDIA ones (DevicePolicy=closed plus DeviceAllow
# for the driver's character devices: /dev/nvidia0.., nvidiactl, nvidia-uvm, nvidia-caps).
{
  config,
  lib,
  options,
  utils,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.sglang;

  instanceOptions =
    { name, ... }:
    {
      options = {
        package = mkOption {
          type = types.package;
          description = "The variant to serve: one of this flake's packages (pick it with `sglang-matrix which`).";
          example = lib.literalExpression "inputs.sglang-matrix.packages.x86_64-linux.sglang-sm90-avx512";
        };
        model = mkOption {
          type = types.str;
          description = "Hugging Face model id or local path (SGLANG_MODEL).";
          example = "Qwen/Qwen2.5-7B-Instruct";
        };
        host = mkOption {
          type = types.str;
          default = "127.0.0.1";
          description = "Address to listen on (SGLANG_HOST).";
        };
        port = mkOption {
          type = types.port;
          default = 30000;
          description = "Port to listen on (SGLANG_PORT).";
        };
        servedModelName = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "Model name the API reports (SGLANG_SERVED_NAME); null: sglang-serve's default.";
        };
        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Further launch_server arguments, each one argument (SGLANG_EXTRA_ARGS, quoted).";
          example = [
            "--mem-fraction-static"
            "0.8"
          ];
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "Further environment (SGLANG_TP_SIZE, HF_TOKEN is better put in a file: see README).";
          example = {
            SGLANG_TP_SIZE = "2";
          };
        };
        openFirewall = mkOption {
          type = types.bool;
          default = false;
          description = "Open `port` in the firewall.";
        };
      };
    };

  serviceName = name: "sglang-${name}";
  stateDir = name: "/var/lib/sglang/${name}";

  # nixpkgs' NVIDIA module (nixos/modules/hardware/video/nvidia.nix) enables the driver for
  # services.xserver.videoDrivers = [ "nvidia" ] or hardware.nvidia.datacenter.enable, and newer revisions
  # say so in the read-only hardware.nvidia.enabled: read that where it is declared.
  nvidiaEnabled =
    if options.hardware.nvidia ? enabled then
      config.hardware.nvidia.enabled
    else
      lib.elem "nvidia" config.services.xserver.videoDrivers || config.hardware.nvidia.datacenter.enable;

  service = name: inst: {
    description = "SGLang server ${name} (${inst.package.name})";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    environment = {
      SGLANG_MODEL = inst.model;
      SGLANG_HOST = inst.host;
      SGLANG_PORT = toString inst.port;
      HOME = stateDir name;
      HF_HOME = "${stateDir name}/huggingface";
      XDG_CACHE_HOME = "${stateDir name}/cache";
    }
    // lib.optionalAttrs (inst.servedModelName != null) { SGLANG_SERVED_NAME = inst.servedModelName; }
    // lib.optionalAttrs (inst.extraArgs != [ ]) { SGLANG_EXTRA_ARGS = lib.escapeShellArgs inst.extraArgs; }
    // inst.environment;
    serviceConfig = {
      ExecStartPre = utils.escapeSystemdExecArgs [ "${inst.package}/bin/sglang-resolve-model" ];
      ExecStart = utils.escapeSystemdExecArgs [ "${inst.package}/bin/sglang-serve" ];
      Restart = "on-failure";
      RestartSec = 10;
      # Loading a model and capturing CUDA graphs takes minutes; sglang-serve does not notify readiness.
      TimeoutStopSec = 60;
      DynamicUser = true;
      StateDirectory = "sglang/${name}";
      StateDirectoryMode = "0750";
      WorkingDirectory = stateDir name;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      NoNewPrivileges = true;
      RestrictSUIDSGID = true;
      ProtectKernelModules = true;
      ProtectControlGroups = true;
      LockPersonality = true;
      # PrivateDevices would hide the GPUs: close the device list instead and allow the driver's devices
      # by their /proc/devices group (nvidia-frontend: /dev/nvidia0.., nvidiactl, nvidia-modeset).
      DevicePolicy = "closed";
      DeviceAllow = [
        "char-nvidia-frontend rw"
        "char-nvidia-uvm rw"
        "char-nvidia-caps r"
      ];
    };
  };

  ports = lib.mapAttrsToList (name: inst: { inherit name; inherit (inst) port; }) cfg.instances;
  clashes = lib.filter (p: lib.length (lib.filter (q: q.port == p.port) ports) > 1) ports;
in
{
  options.services.sglang.instances = mkOption {
    type = types.attrsOf (types.submodule instanceOptions);
    default = { };
    description = "SGLang servers, each a systemd service `sglang-<name>`.";
  };

  config = lib.mkIf (cfg.instances != { }) {
    assertions = [
      {
        assertion = nvidiaEnabled;
        message = ''services.sglang: the NVIDIA driver is not enabled, so no instance could reach a GPU: set services.xserver.videoDrivers = [ "nvidia" ] (or hardware.nvidia.datacenter.enable = true).'';
      }
      {
        assertion = clashes == [ ];
        message = "services.sglang: instances ${lib.concatMapStringsSep ", " (p: "${p.name} (port ${toString p.port})") clashes} use the same port.";
      }
    ];

    systemd.services = lib.mapAttrs' (
      name: inst: lib.nameValuePair (serviceName name) (service name inst)
    ) cfg.instances;

    networking.firewall.allowedTCPPorts = lib.concatMap (inst: lib.optional inst.openFirewall inst.port) (
      lib.attrValues cfg.instances
    );
  };
}
