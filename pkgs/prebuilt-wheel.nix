# The one helper for every prebuilt wheel of a variant: fetch it (locked hash), install it as a wheel,
# and let autoPatchelf point its ELF objects at the libraries the spec names.
{
  lib,
  buildPythonPackage,
  fetchPypi,
  fetchurl,
  autoPatchelfHook,
  autoAddDriverRunpath,
  python,
}:
{
  # The attribute name (sglang's Requires-Dist spelling) and matrix.toml's entry for it.
  attr,
  wheel,
  # The wheel's file name and pkgs/sources.json's entry for it (fields for fetchPypi, or url; SRI hash).
  filename,
  source,
  # Resolved derivations for wheel.libraries and wheel.dependencies.
  libraries ? [ ],
  dependencies ? [ ],
  # Paths (globs relative to site-packages) this variant drops: device code its GPUs cannot use.
  prune ? [ ],
  # SONAMEs that only the NVIDIA driver provides (libcuda.so.1): autoPatchelf must not look for them.
  driverSonames ? [ ],
  # Directories autoPatchelf must search besides the inputs' lib/: Python packages keep their shared
  # objects in site-packages (torch's live in its `lib` output, reached through site-packages/torch/lib).
  searchPaths ? [ ],
  # requiredSystemFeatures: gccarch-<march> when the import check loads the variant's torch, whose code
  # needs the ISA (a builder without it dies with SIGILL).
  systemFeatures ? [ ],
  # Extra passthru (the torch wheel: what nixpkgs' torch exposes to its dependents).
  passthru ? { },
}:
let
  native = libraries != [ ];
  # Prebuilt machine code: ELF objects, or (flashinfer-cubin) GPU code in a pure-Python wheel.
  nativeCode = native || !(wheel.tags ? any) || (wheel.native-code or false);
in
buildPythonPackage (
{
  pname = attr;
  inherit (wheel) version;
  format = "wheel";

  src =
    if source ? url then
      # The name must be given: the URL's last part has "%2B" for "+", which a store path cannot hold.
      fetchurl {
        name = filename;
        inherit (source) url hash;
      }
    else
      fetchPypi {
        inherit (source)
          pname
          version
          dist
          python
          abi
          platform
          hash
          ;
        format = "wheel";
      };

  nativeBuildInputs = lib.optionals native [
    autoPatchelfHook
    # Adds /run/opengl-driver/lib to the runpath, where NixOS puts libcuda.so.1.
    autoAddDriverRunpath
  ];
  buildInputs = map lib.getLib libraries;
  inherit dependencies;

  autoPatchelfIgnoreMissingDeps = lib.optionals native driverSonames;
  # Each pattern must match: a rule that matches nothing means the wheel changed under the spec.
  postInstall = lib.concatMapStrings (path: ''
    matches=( "$out/${python.sitePackages}"/${path} )
    if [ ! -e "''${matches[0]}" ]; then
      echo "sglang-matrix: prune path ${path} matches nothing in ${attr}" >&2
      exit 1
    fi
    echo "sglang-matrix: pruning ''${matches[*]}"
    rm -r "''${matches[@]}"
  '') prune;
  preFixup = lib.concatMapStrings (dir: ''
    addAutoPatchelfSearchPath "${dir}"
  '') searchPaths;

  # Stripping prebuilt CUDA objects can corrupt their device code (nixpkgs' torch-bin does the same).
  dontStrip = true;
  # torch propagates ninja and cmake, whose setup hooks would take over the build and configure phases of
  # every package downstream of it.
  dontUseNinjaBuild = true;
  dontUseNinjaInstall = true;
  dontUseCmakeConfigure = true;

  pythonImportsCheck = wheel.imports or [ ];

  inherit passthru;

  meta = {
    inherit (wheel) description homepage;
    license = lib.licenses.${wheel.license};
    platforms = if wheel.tags ? any then lib.platforms.linux else builtins.attrNames wheel.tags;
  }
  // lib.optionalAttrs nativeCode {
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
  };
}
# Only where the spec asks: mk-python-derivation adds the relax-deps hook whenever the attribute exists,
# even set to false, and that hook unpacks and repacks the wheel (sgl-kernel's 535 MB included).
// lib.optionalAttrs (wheel.remove-deps or false) {
  pythonRemoveDeps = true;
}
// lib.optionalAttrs (systemFeatures != [ ]) {
  requiredSystemFeatures = systemFeatures;
}
)
