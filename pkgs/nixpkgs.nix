# nixpkgs instantiated for one (system, CUDA version, capability set): the key of a variant's
# `nixpkgsKey`. A line whose torch is a wheel shares one instance per system and CUDA among its targets,
# configured for the union of their capabilities (`instanceCapabilities`): nothing it takes from nixpkgs
# depends on one target, and NCCL, built from source for config.cudaCapabilities, is then built once. Both settings matter (see FACTS.md): torch's passthru.cudaCapabilities, NCCL and magma
# follow config.cudaCapabilities, not torch's gpuTargets; and torch is marked broken when magma's CUDA
# differs from its own, so the CUDA version is chosen for the whole package set by a top-level overlay.
{
  nixpkgs,
  variant,
}:
let
  cudaAttr = "cudaPackages_${builtins.replaceStrings [ "." ] [ "_" ] variant.cuda}";
in
import nixpkgs {
  inherit (variant) system;
  config = {
    allowUnfree = true; # CUDA, cuDNN and NCCL are unfree
    cudaSupport = true;
    cudaCapabilities = variant.instanceCapabilities or variant.capabilities;
  };
  overlays = [
    (final: prev: {
      cudaPackages = final.${cudaAttr} or (throw "sglang-matrix: nixpkgs has no ${cudaAttr} for CUDA ${variant.cuda}");
    })
  ];
}
