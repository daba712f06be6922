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

  wheelPackage =
    attr: wheel:
    let
      libraries = wheel.libraries or [ ];
    in
    mkPrebuiltWheel {
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
    };

  wheels = lib.filterAttrs (attr: _: variant.wheels ? ${attr}) line.wheels;
in
builtins.mapAttrs wheelPackage wheels
// {
  torch =
    if prev.torch.version != line.torch.version then
      throw "sglang-matrix: matrix.toml pins torch ${line.torch.version}, but this nixpkgs has ${prev.torch.version}"
    else
      import ./torch.nix {
        inherit lib variant;
        torch = prev.torch;
      };
}
