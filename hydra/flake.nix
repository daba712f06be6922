# Hydra's jobset for sglang-matrix: every variant of the matrix (161 jobs: both release lines), e.g.
# hydraJobs.sglang-sm90-avx512.x86_64-linux. Point a flake jobset at this directory
# (`git+https://…/sglang-matrix?dir=hydra`). The jobs live in the main flake's `lib.hydraJobs` rather than
# its `hydraJobs` output so that `nix flake check` of the main flake stays cheap: it evaluates every
# `hydraJobs` entry, and each is a CUDA nixpkgs instance with a torch build.
{
  description = "Hydra jobset: every sglang-matrix variant";

  # The main flake, by relative path: the same checkout, locked as a path relative to this one.
  inputs.sglang-matrix.url = "path:..";

  outputs =
    { sglang-matrix, ... }:
    {
      inherit (sglang-matrix.lib) hydraJobs;
    };
}
