# The variant's Python package set, as a packageOverrides overlay: its own torch, and every prebuilt wheel
# of the release line that has a build for the variant's system. Which libraries a wheel is patched
# against and which packages it propagates come from matrix.toml (`libraries`, `requires`), so the audit
# (`sglang-matrix audit`) checks the same data these packages are built from.
{
  lib,
  pkgs,
  variant,
  line,
  sonames,
  sources,
}:
final: prev:
let
  # "python.pkgs.X" is this very package set; anything else is a nixpkgs attribute path.
  resolve =
    path:
    let
      parts = lib.splitString "." path;
    in
    if lib.take 2 parts == [ "python" "pkgs" ] then
      lib.getAttrFromPath (lib.drop 2 parts) final
    else
      lib.getAttrFromPath parts pkgs;

  # Where a Python library's shared objects are: torch's under site-packages/torch/lib, others anywhere
  # in their site-packages (autoPatchelf searches it recursively).
  searchPathOf =
    path: drv:
    if path == "python.pkgs.torch" then
      "${drv}/${final.python.sitePackages}/torch/lib"
    else
      "${drv}/${final.python.sitePackages}";

  driverSonames = builtins.filter (soname: sonames.${soname} == "driver") (builtins.attrNames sonames);

  sourceOf =
    attr:
    let
      file = variant.wheels.${attr};
    in
    sources.wheels.${file} or (throw "sglang-matrix: pkgs/sources.json has no entry for ${file}; run `sglang-matrix lock`");

  mkPrebuiltWheel = final.callPackage ./prebuilt-wheel.nix { };

  # Code built with the ISA's flags (torch) dies with SIGILL on a CPU without them: whatever imports torch
  # while it builds needs a builder that advertises gccarch-<march> (nixpkgs' convention), as torch does.
  gccFeatures = lib.optional ((variant.gccArch or null) != null) "gccarch-${variant.gccArch}";

  # A wheel of the line that requires torch, directly or through another wheel of the line.
  requiresTorch =
    attr:
    let
      reqs = lib.unique (builtins.attrValues (line.wheels.${attr}.requires or { }));
    in
    builtins.elem "torch" reqs || builtins.any (r: r != attr && line.wheels ? ${r} && requiresTorch r) reqs;

  # nixpkgs packages of the closure whose checks (on by default) would run against the variant's torch and
  # rebuild their test inputs against it, per variant (tests/nixpkgs-double/python-modelled.nix cites each
  # expression): torchao's (bitsandbytes compiles CUDA code against torch; transformers), compressed-
  # tensors' (its tests load the variant's torch), and safetensors', whose only torch is a test input:
  # with its checks on, every variant would rebuild safetensors and transformers above it.
  checksOff = [
    "compressed-tensors"
    "safetensors"
    "torchao"
  ];
  # nixpkgs packages whose build imports torch (pythonImportsCheck, or an import in their checkPhase).
  importsTorch = [
    "compressed-tensors"
    "outlines"
    "torchao"
    "torchvision"
  ];
  adjusted =
    name:
    let
      checked =
        if builtins.elem name checksOff then prev.${name}.overridePythonAttrs { doCheck = false; } else prev.${name};
    in
    if builtins.elem name importsTorch && gccFeatures != [ ] then
      checked.overrideAttrs (old: {
        requiredSystemFeatures = lib.unique ((old.requiredSystemFeatures or [ ]) ++ gccFeatures);
      })
    else
      checked;

  # torch from the line's wheel ([lines.X.torch] source = "wheel"): composed the way nixpkgs' torch-bin
  # composes pip's wheel. Its own shared objects live in site-packages/torch/lib, and its passthru carries
  # what dependents of nixpkgs' torch read (cudaSupport, cudaPackages, cudaCapabilities). It has no
  # `cxxdev` output, so nothing may be built from source against it: torchvision is a wheel too.
  wheelTorch = (line.torch.source or "nixpkgs") == "wheel";
  torchWheelExtras = {
    searchPaths = [ "$out/${final.python.sitePackages}/torch/lib" ];
    passthru = {
      cudaSupport = true;
      inherit (pkgs) cudaPackages;
      # What this variant's device code is kept for (the wheel itself has code for more).
      cudaCapabilities = variant.capabilities;
      sglangMatrix = {
        source = "wheel";
        inherit (variant) target capabilities;
      };
    };
  };

  wheelPackage =
    attr: wheel:
    let
      libraries = wheel.libraries or [ ];
      extras = lib.optionalAttrs (attr == "torch" && wheelTorch) torchWheelExtras;
    in
    mkPrebuiltWheel ({
      inherit attr wheel driverSonames;
      filename = variant.wheels.${attr};
      source = sourceOf attr;
      prune = variant.pruned.${attr} or [ ];
      libraries = map resolve libraries;
      # A requirement provided by one of the line's wheels that this variant goes without (an optional
      # wheel with no build for its system or CUDA) is left out.
      dependencies = map (name: final.${name}) (
        builtins.filter (name: !(line.wheels ? ${name}) || variant.wheels ? ${name}) (
          lib.unique (builtins.attrValues (wheel.requires or { }))
        )
      );
      searchPaths = map (path: searchPathOf path (resolve path)) (
        builtins.filter (lib.hasPrefix "python.pkgs.") libraries
      );
      systemFeatures = lib.optionals ((wheel.imports or [ ]) != [ ] && requiresTorch attr) gccFeatures;
    }
    // lib.optionalAttrs (extras ? searchPaths) {
      searchPaths = map (path: searchPathOf path (resolve path)) (
        builtins.filter (lib.hasPrefix "python.pkgs.") libraries
      ) ++ extras.searchPaths;
      inherit (extras) passthru;
    });

  wheels = lib.filterAttrs (attr: _: variant.wheels ? ${attr}) line.wheels;

  # nixpkgs' own torch, built from source for this variant (pkgs/torch.nix), and torchvision against it.
  sourceTorch = {
    # nixpkgs' torchvision takes `torch` from this set, so it builds against the variant's torch. Its
    # TORCH_CUDA_ARCH_LIST comes from torch.cudaCapabilities, which at the pin keeps nixpkgs' duplicate
    # "10.0" (and is filtered by torch's own list): the variant's capabilities instead, each once.
    torchvision = (adjusted "torchvision").overrideAttrs (old: {
      env = (old.env or { }) // {
        TORCH_CUDA_ARCH_LIST = lib.concatStringsSep ";" (lib.unique variant.capabilities);
      };
    });

    torch =
      if prev.torch.version != line.torch.version then
        throw "sglang-matrix: matrix.toml pins torch ${line.torch.version}, but this nixpkgs has ${prev.torch.version}"
      else
        import ./torch.nix {
          inherit lib variant;
          torch = prev.torch;
        };
  };
in
# The line's wheels come last: a wheel (torch and torchvision on a wheel-torch line) wins over nixpkgs'.
lib.genAttrs (lib.unique (checksOff ++ importsTorch)) adjusted
// lib.optionalAttrs (!wheelTorch) sourceTorch
// builtins.mapAttrs wheelPackage wheels
