# CPython and its package set for the double: `override { self; packageOverrides; }`, `pkgs`,
# `withPackages`, `buildEnv`, and python3Packages with buildPythonPackage, callPackage and torch.
{
  lib,
  mkDerivation,
  final,
}:
{ version, pythonVersion }:
let
  fix =
    f:
    let
      x = f x;
    in
    x;

  # The package attributes present at the pin that sglang-matrix may use (README.md says how each was
  # checked). An attribute missing here fails the evaluation, as a missing one would in nixpkgs.
  names = import ./python-names.nix;

  makeOverridable =
    f: args:
    let
      result = f args;
    in
    result // { override = newArgs: makeOverridable f (args // newArgs); };

  mkPython =
    {
      # nixpkgs uses `self` so that python.pkgs and withPackages follow the overrides; the double's
      # result always does, so it only has to be accepted.
      self ? null,
      packageOverrides ? (_: _: { }),
    }:
    let
      sitePackages = "lib/python${pythonVersion}/site-packages";
      interp =
        mkDerivation {
          pname = "python3";
          inherit version;
        }
        // {
          inherit pythonVersion sitePackages;
          executable = "python${pythonVersion}";
          interpreter = "${interp}/bin/python${pythonVersion}";
          pkgs = pythonPackages;
          override = args: mkPython ({ inherit self packageOverrides; } // args);
          withPackages = f: buildEnv.override { extraLibs = f pythonPackages; };
          inherit buildEnv;
        };

      # nixpkgs: pkgs/development/interpreters/python/wrapper.nix (buildEnv's arguments).
      buildEnv = makeOverridable (
        {
          extraLibs ? [ ],
          extraOutputsToInstall ? [ ],
          postBuild ? "",
          ignoreCollisions ? false,
          permitUserSite ? false,
          makeWrapperArgs ? [ ],
        }:
        mkDerivation {
          name = "python${pythonVersion}-${version}-env";
          inherit extraLibs postBuild ignoreCollisions;
          makeWrapperArgs = makeWrapperArgs;
          passthru = {
            inherit extraLibs makeWrapperArgs;
            python = interp;
            env = { };
          };
        }
      ) { };

      # buildPythonPackage passes unknown attributes through in nixpkgs (a typo becomes an ignored
      # environment variable). The double is stricter on purpose: it accepts only these names.
      knownArgs = [
        "pname"
        "version"
        "format"
        "pyproject"
        "src"
        "nativeBuildInputs"
        "buildInputs"
        "propagatedBuildInputs"
        "dependencies"
        "build-system"
        "optional-dependencies"
        "autoPatchelfIgnoreMissingDeps"
        "appendRunpaths"
        "runtimeDependencies"
        "preFixup"
        "postFixup"
        "postInstall"
        "installPhase"
        "buildPhase"
        "dontUnpack"
        "postPatch"
        "dontStrip"
        "dontUseNinjaBuild"
        "dontUseNinjaInstall"
        "dontUseCmakeConfigure"
        "dontAutoPatchelf"
        "pythonRemoveDeps"
        "pythonRelaxDeps"
        "pythonImportsCheck"
        "doCheck"
        "nativeCheckInputs"
        "makeWrapperArgs"
        "meta"
        "passthru"
        "env"
      ];
      formats = [
        "setuptools"
        "pyproject"
        "wheel"
        "other"
        "flit"
      ];
      buildPythonPackage =
        attrs:
        let
          unknown = builtins.filter (n: !(builtins.elem n knownArgs)) (builtins.attrNames attrs);
          format = attrs.format or "setuptools";
        in
        if unknown != [ ] then
          throw "buildPythonPackage (nixpkgs double): unknown attribute(s) ${toString unknown}; nixpkgs would pass them through silently"
        else if !(builtins.elem format formats) then
          throw "buildPythonPackage: format = ${format} is not one of ${toString formats}"
        else
          let
            drv = mkDerivation (
              removeAttrs attrs [ "dependencies" ]
              // {
                name = "python${pythonVersion}-${attrs.pname}-${attrs.version}";
                propagatedBuildInputs = (attrs.propagatedBuildInputs or [ ]) ++ (attrs.dependencies or [ ]);
                passthru = (attrs.passthru or { }) // {
                  dependencies = attrs.dependencies or [ ];
                  pythonModule = interp;
                };
              }
            );
          in
          drv // { overridePythonAttrs = f: buildPythonPackage (attrs // f attrs); };

      simple =
        pname:
        buildPythonPackage {
          inherit pname;
          version = "0-double";
          format = "other";
        };

      torch = import ./torch.nix {
        inherit mkDerivation makeOverridable interp;
        pkgs = final;
      };

      basePackages =
        pfinal:
        lib.genAttrs names simple
        // {
          inherit buildPythonPackage;
          buildPythonApplication = buildPythonPackage;
          inherit (final) fetchPypi;
          python = interp;
          callPackage =
            fn: args:
            let
              f = if builtins.isFunction fn then fn else import fn;
            in
            f (builtins.intersectAttrs (builtins.functionArgs f) (final // pfinal) // args);
          inherit torch;
        };

      pythonPackages = fix (
        pfinal:
        let
          prev = basePackages pfinal;
        in
        prev // packageOverrides pfinal prev
      );
    in
    interp;
in
mkPython { }
