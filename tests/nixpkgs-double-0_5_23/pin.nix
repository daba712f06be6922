# Pin B's data (494ce7fd, nixos-unstable 2026-10-05, the 0.5.23 line). The index holds no file at this
# commit (nor at c59305ba / 6774f7bc), so each value cites the stored nixpkgs copy or dated PR it rests on;
# where that cannot settle a value the double stays strict (README.md lists those places).
let
  pinA = import ../nixpkgs-double/pin.nix;
in
{
  rev = "494ce7fd23ff6a5dff39e1fb11e9b6f2ac74bf25";
  cuda = {
    # cuda-bindings/{12_9,13_0,13_1,13_2,13_3,13_4}.nix (NixOS/nixpkgs, pkgs/development/python-modules/
    # cuda-bindings/) show the sets 13_0..13_4; the manifests under pkgs/development/cuda-modules/_cuda/
    # manifests/cuda/ include redistrib_12.8.2, 12.9.x, 13.0.3, 13.1.2, 13.2.2, 13.3.1, 13.4.x. 12_6 is left
    # out: its presence at this pin was not established (strict).
    sets = {
      "12_8" = "12.8";
      "12_9" = "12.9";
      "13_0" = "13.0";
      "13_1" = "13.1";
      "13_2" = "13.2";
      "13_3" = "13.3";
      "13_4" = "13.4";
    };
    # pkgs/top-level/all-packages.nix, stored copy of this era (content id 61952153747, undated):
    # `cudaPackages = recurseIntoAttrs cudaPackages_12; cudaPackages_12 = cudaPackages_12_9;
    # cudaPackages_13 = cudaPackages_13_2;`.
    aliases = {
      cudaPackages = "cudaPackages_12_9";
      cudaPackages_12 = "cudaPackages_12_9";
      cudaPackages_13 = "cudaPackages_13_2";
    };
    # cudaPackages_13_0 is CUDA 13.0.3: pkgs/development/cuda-modules/_cuda/manifests/cuda/
    # redistrib_13.0.3.json @ 7ae1489c (release_date 2026-04-13; docs/release-line-0.5.23.md section 4).
    # cudnn 9.27.0: the newest cudnn manifest (FACTS.md). nccl (a source build), libnvshmem and
    # libcusparse_lt are not settled (nccl 2.31.2 by NixOS/nixpkgs#551615 or 2.32.3 by #564344; libnvshmem
    # >= 3.6.5 by #503855; cusparselt 0.8.1 or 0.10.0): they keep the release's version, as at pin A, so
    # nothing can mistake it for theirs. The other sets' per-package versions were not read.
    versions."13.0" = {
      cuda_cudart = "13.0.96";
      cuda_nvrtc = "13.0.88";
      cuda_nvcc = "13.0.88";
      cuda_cccl = "13.0.85";
      cuda_cupti = "13.0.85";
      libcublas = "13.1.1.3";
      libcufft = "12.0.0.61";
      libcufile = "1.15.1.6";
      libcurand = "10.4.0.35";
      libcusolver = "12.0.4.66";
      libcusparse = "12.6.3.3";
      cudnn = "9.27.0";
    };
    # pkgs/development/cuda-modules/packages/libnvshmem.nix (17 stored versions; torch 2.13.0's expression
    # takes `withNvshmem ? (cudaSupport && cudaPackages.libnvshmem.meta.available)`).
    extraNames = [ "libnvshmem" ];
    # pkgs/development/cuda-modules/packages/nccl.nix: `stdenv.mkDerivation` from NVIDIA/nccl's source,
    # taking `flags` and building for flags' gencode (stored copies 2.24.3-1 .. 2.26.2-1 have this shape),
    # so its drvPath follows config.cudaCapabilities; the redistributables' do not.
    sourceBuilt = [ "nccl" ];
    # pkgs/development/cuda-modules/_cuda/db/bootstrap/cuda.nix @ 55d5788ba119d2eebd029c1997baef6db81d9372
    # (the stored copy that knows 11.0 and CUDA 13; undated): [ minCudaMajorMinorVersion
    # maxCudaMajorMinorVersion ], the max inclusive as nixpkgs' support check reads it. 5.x/6.x/7.0 end at
    # 12.9, so CUDA 13 cannot build them. Jetson capabilities (7.2, 8.7, 10.1*, 11.0*) are not modelled:
    # nixpkgs refuses to mix them with others and builds them on aarch64 only, in words not read here; the
    # double fails them as unknown (strict).
    capabilityRange = {
      "5.0" = [ "10.0" "12.9" ];
      "5.2" = [ "10.0" "12.9" ];
      "6.0" = [ "10.0" "12.9" ];
      "6.1" = [ "10.0" "12.9" ];
      "7.0" = [ "10.0" "12.9" ];
      "7.5" = [ "10.0" null ];
      "8.0" = [ "11.2" null ];
      "8.6" = [ "11.2" null ];
      "8.9" = [ "11.8" null ];
      "9.0" = [ "11.8" null ];
      "9.0a" = [ "12.0" null ];
      "10.0" = [ "12.7" null ];
      "10.0a" = [ "12.7" null ];
      "10.0f" = [ "12.9" null ];
      "10.3" = [ "12.9" null ];
      "10.3a" = [ "12.9" null ];
      "10.3f" = [ "12.9" null ];
      "12.0" = [ "12.8" null ];
      "12.0a" = [ "12.8" null ];
      "12.0f" = [ "12.9" null ];
      "12.1" = [ "12.9" null ];
      "12.1a" = [ "12.9" null ];
      "12.1f" = [ "12.9" null ];
    };
  };
  # python312 3.12.14: NixOS/nixpkgs#552296 "python312: 3.12.13 -> 3.12.14" (merged, 2026-08-13); no later
  # bump found. python313 and python314: no bump PR near the pin was found; 3.13.14 / 3.14.6 are the upstream
  # releases of 2026-06 (probable, not read). python3 = python314: NixOS/nixpkgs#521373 "python3: 3.13 ->
  # 3.14" (merged; carlthome/mirpkgs#26: switched 2026-07-08). Python 3.12 is still there: no removal
  # found, and 3.10's (NixOS/nixpkgs#488818) left 3.12 alone.
  pythons = {
    python312 = {
      version = "3.12.14";
      pythonVersion = "3.12";
    };
    python313 = {
      version = "3.13.14";
      pythonVersion = "3.13";
    };
    python314 = {
      version = "3.14.6";
      pythonVersion = "3.14";
    };
  };
  python3 = "python314";
  # Top-level packages beyond the shared ones. zlib: pkgs/development/libraries/zlib (outputs out, dev,
  # static); its version at the pin was not read (1.3.1 is upstream's newest release of the era).
  packages =
    { mkDerivation, ... }:
    {
      zlib = mkDerivation {
        pname = "zlib";
        version = "1.3.1";
        outputs = [
          "out"
          "dev"
          "static"
        ];
      };
    };
  pythonNames = import ./python-names.nix;
  pythonModelled = import ./python-modelled.nix;
  # torch (source): 2.12.0 at nixos-unstable 34ab9907 (2026-08-31, FACTS.md); a stored 2.13.0 expression
  # (content id 70895162585, undated) exists; which one this pin holds could not be settled. Strict on
  # every count: the version last seen on the channel; only the arguments both 2.9.1's and 2.13.0's
  # expressions take (2.13.0 dropped targetPackages, astunparse, expecttest, types-dataclasses); and broken
  # for CUDA 13, which 2.13.0 allows (brokenConditions "Unsupported CUDA version" lists 11, 12, 13) but
  # 2.12's expression was not found to. The 0.5.23 line takes torch 2.14.1 as a wheel, not this.
  torch = pinA.torch // {
    version = "2.12.0";
    argNames = builtins.filter (
      n:
      !(builtins.elem n [
        "targetPackages"
        "astunparse"
        "expecttest"
        "types-dataclasses"
      ])
    ) pinA.torch.argNames;
    # Whether 2.12's list still holds "10.0" twice was not read: once.
    duplicateTen = false;
  };
}
