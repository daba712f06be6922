# An OCI image of one variant: `nix build .#<variant>-image` gives a script that streams the image as a
# docker-archive tarball (dockerTools.streamLayeredImage: nothing image-sized lands in the store); pipe it
# to `docker load`, or `skopeo copy docker-archive:/dev/stdin docker://REGISTRY/...`.
#
# - Layers: streamLayeredImage puts store paths in their own layers by nixpkgs' default layering, which since
#   NixOS/nixpkgs#355189 (2024-11) starts from the largest paths by NAR size and keeps with each what only it
#   uses: torch's libraries and each CUDA library (cuBLAS, cuDNN, NCCL, ...) become layers of their own,
#   shared between the images of variants that share them. maxLayers stays under the 127 that overlayfs
#   allows a container.
# - Entrypoint: the seed runtime's `sglang-resolve-model && sglang-serve`, the variant's own bin/ scripts
#   (every entry point first finds the host's NVIDIA driver: pkgs/launcher.bash, host/driver.py, which looks
#   where the NVIDIA container toolkit mounts it: the image's library directories and their ld.so.cache,
#   /usr/local/nvidia/lib64, /run/opengl-driver/lib). Arguments go to sglang-serve (`--dry-run`).
# - Runs as uid/gid 1000 (`sglang`), with /models (the Hugging Face cache, HF_HUB_CACHE) as a volume, and
#   the caches (FlashInfer's JIT, the resolved model, the driver links) under /models/.cache so a restart
#   keeps them.
# - Labels: the variant, its ISA ("any" where it has none), its capabilities, its CUDA and the drivers it
#   needs ([cuda-drivers] in matrix.toml).
{
  lib,
  dockerTools,
  runCommand,
  writeShellScript,
  cacert,
  # The variant's environment (pkgs/sglang-env.nix) and the spec (lib/: matrix.toml as data).
  sglangEnv,
  matrix,
}:
let
  inherit (sglangEnv) variant;
  uid = 1000;
  port = 30000;
  cudaMajor = builtins.head (lib.splitString "." variant.cuda);
  drivers = matrix.cuda-drivers or { };

  # /etc/passwd and /etc/group: Python's getpass and pwd (torch's caches use them) need the user to exist.
  etc = runCommand "sglang-image-etc" { } ''
    mkdir -p $out/etc
    printf '%s\n' 'root:x:0:0:root:/root:/noshell' 'sglang:x:${toString uid}:${toString uid}:SGLang:/home/sglang:/noshell' \
      'nobody:x:65534:65534:nobody:/nonexistent:/noshell' > $out/etc/passwd
    printf '%s\n' 'root:x:0:' 'sglang:x:${toString uid}:' 'nogroup:x:65534:' > $out/etc/group
  '';

  entrypoint = writeShellScript "${variant.name}-entrypoint" ''
    # Resolve the model (bundled, in the HF cache on /models, or remote), then serve.
    ${sglangEnv}/bin/sglang-resolve-model || exit $?
    exec ${sglangEnv}/bin/sglang-serve "$@"
  '';

  labels = {
    "org.opencontainers.image.title" = variant.longName;
    "org.opencontainers.image.description" = sglangEnv.meta.description;
    "org.opencontainers.image.version" = variant.versions.sglang;
    "sglang-matrix.variant" = variant.name;
    "sglang-matrix.long-name" = variant.longName;
    "sglang-matrix.system" = variant.system;
    "sglang-matrix.target" = variant.target;
    # A variant without an ISA (its torch is a prebuilt wheel) runs on any CPU of its system; a label value
    # must be a string. The ISA variants' labels, and so their derivations, stay as they were.
    "sglang-matrix.isa" = if variant.isa == null then "any" else variant.isa;
    "sglang-matrix.python" = variant.python;
    "sglang-matrix.torch" = variant.versions.torch;
    "sglang-matrix.capabilities" = lib.concatStringsSep " " variant.capabilities;
    "sglang-matrix.cuda" = variant.cuda;
  }
  // lib.optionalAttrs (drivers ? minimum.${cudaMajor}) {
    # The oldest driver that runs this CUDA major (minor-version compatibility) ...
    "sglang-matrix.driver.minimum" = drivers.minimum.${cudaMajor};
  }
  // lib.optionalAttrs (drivers ? full.${variant.cuda}) {
    # ... and the one that runs all of this CUDA release, its PTX included.
    "sglang-matrix.driver.full" = drivers.full.${variant.cuda};
  };
in
(dockerTools.streamLayeredImage {
  # The same reference `sglang-matrix k8s` puts in the Deployment (k8s.image_ref).
  name = "sglang-matrix/${variant.name}";
  tag = variant.versions.sglang;
  contents = [
    sglangEnv
    etc
  ];
  maxLayers = 100;
  passthru = {
    inherit entrypoint etc variant;
  };
  # Owned by the user: the volume's mount point and the home; /tmp for everyone, sticky.
  fakeRootCommands = ''
    mkdir -p ./models ./home/sglang ./tmp
    chown ${toString uid}:${toString uid} ./models ./home/sglang
    chmod 1777 ./tmp
  '';
  config = {
    User = "${toString uid}:${toString uid}";
    Entrypoint = [ "${entrypoint}" ];
    Cmd = [ ];
    WorkingDir = "/home/sglang";
    ExposedPorts."${toString port}/tcp" = { };
    Volumes."/models" = { };
    Env = [
      "PATH=/bin"
      "HOME=/home/sglang"
      "TMPDIR=/tmp"
      "HF_HUB_CACHE=/models"
      "XDG_CACHE_HOME=/models/.cache"
      "SGLANG_HOST=0.0.0.0"
      "SGLANG_PORT=${toString port}"
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      # What the NVIDIA container toolkit mounts (NVIDIA_VISIBLE_DEVICES comes from `docker run --gpus`
      # or Kubernetes' device plugin, never from the image, so a pod without a GPU request sees none).
      "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
    ];
    Labels = labels;
  };
})
// {
  meta = {
    description = "OCI image (streamed) of ${variant.longName}: ${sglangEnv.meta.description}";
    platforms = [ variant.system ];
  };
}
