# CPython and its package set for the double: `override { self; packageOverrides; }`, `pkgs`,
# `withPackages`, `buildEnv`, and python3Packages with buildPythonPackage, callPackage and torch.
{
  lib,
  mkDerivation,
  final,
  # The pin's data (pin.nix): package names, the modelled expressions, torch.
  pin,
}:
{ version, pythonVersion }:
let
  fix =
    f:
    let
      x = f x;
    in
    x;

  # The package attributes present at the pin that sglang-matrix may use (the pin's python-names.nix says
  # how each was checked). An attribute missing here fails the evaluation, as a missing one would in nixpkgs.
  names = pin.pythonNames;

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

      # nixpkgs: pkgs/development/interpreters/python/wrapper.nix. buildEnv's arguments are extraLibs
      # extraOutputsToInstall postBuild ignoreCollisions permitUserSite makeWrapperArgs; it links
      # `paths` = requiredPythonModules (extraLibs ++ [ python ]) (the Python modules they propagate,
      # recursively) and returns passthru { python env } only: `extraLibs` is an argument, not an attribute
      # of the result, so code that reads env.extraLibs fails against nixpkgs, and here.
      requiredPythonModules =
        drvs:
        let
          modules = builtins.filter (d: d ? pythonModule) drvs;
          closure = builtins.genericClosure {
            startSet = map (d: {
              key = d.outPath;
              drv = d;
            }) modules;
            operator =
              item:
              map
                (d: {
                  key = d.outPath;
                  drv = d;
                })
                (builtins.filter (d: d ? pythonModule) (item.drv.propagatedBuildInputs or [ ]));
          };
        in
        map (item: item.drv) closure;
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
          paths = requiredPythonModules extraLibs ++ [ interp ];
          inherit postBuild ignoreCollisions makeWrapperArgs;
          passthru = {
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
        "checkPhase"
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
        "checkInputs"
        "nativeCheckInputs"
        "disabledTests"
        "requiredSystemFeatures"
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
      # nixpkgs: pkgs/development/interpreters/python/mk-python-derivation.nix (stored copies near the pin:
      # the index holds no copy at 0182a361 itself; FACTS.md records what the pin's has):
      #   - stdenv.mkDerivation (finalAttrs: ...) with name = namePrefix + attrs.name or
      #     "${finalAttrs.pname}-${finalAttrs.version}": an overridden pname changes the name;
      #   - the relax-deps hook whenever `attrs ? pythonRelaxDeps || attrs ? pythonRemoveDeps` (even false);
      #   - doCheck = false, doInstallCheck = attrs.doCheck or true (checks default to on),
      #     nativeInstallCheckInputs = nativeCheckInputs, installCheckInputs = checkInputs;
      #   - `assert (pyproject != null) -> (format == null)`: never both. Giving neither defaults to
      #     "setuptools" in the stored copies; whether the pin rejects it could not be established, so the
      #     double rejects it (strict: sglang-matrix always says which it means).
      buildPythonPackage =
        attrs:
        let
          unknown = builtins.filter (n: !(builtins.elem n knownArgs)) (builtins.attrNames attrs);
          format' =
            if attrs ? pyproject then
              (if attrs.pyproject then "pyproject" else "other")
            else
              attrs.format or null;
          checksOn = attrs.doCheck or true;
          relaxHook = attrs ? pythonRelaxDeps || attrs ? pythonRemoveDeps;
        in
        if unknown != [ ] then
          throw "buildPythonPackage (nixpkgs double): unknown attribute(s) ${toString unknown}; nixpkgs would pass them through silently"
        else if attrs ? pyproject && attrs ? format then
          throw "buildPythonPackage: assertion '(pyproject != null) -> (format == null)' failed (give pyproject or format, not both)"
        else if format' == null then
          throw "buildPythonPackage (nixpkgs double): ${attrs.pname}: set `pyproject` or `format` (the double requires exactly one)"
        else if !(builtins.elem format' formats) then
          throw "buildPythonPackage: format = ${format'} is not one of ${toString formats}"
        else
          let
            drv = mkDerivation (
              finalAttrs:
              removeAttrs attrs [
                "dependencies"
                "optional-dependencies"
                "build-system"
                "pyproject"
                "format"
                "doCheck"
                "checkInputs"
                "nativeCheckInputs"
                "checkPhase"
              ]
              // {
                name = "python${pythonVersion}-" + attrs.name or "${finalAttrs.pname}-${finalAttrs.version}";
                nativeBuildInputs =
                  lib.optional relaxHook relaxDepsHook
                  ++ lib.optional (format' == "wheel") wheelUnpackHook
                  ++ (attrs.nativeBuildInputs or [ ])
                  ++ (attrs.build-system or [ ]);
                propagatedBuildInputs = (attrs.propagatedBuildInputs or [ ]) ++ (attrs.dependencies or [ ]);
                doCheck = false;
                doInstallCheck = checksOn;
                nativeInstallCheckInputs = attrs.nativeCheckInputs or [ ];
                installCheckInputs = attrs.checkInputs or [ ];
                passthru = (attrs.passthru or { }) // {
                  dependencies = attrs.dependencies or [ ];
                  pythonModule = interp;
                };
              }
            );
          in
          # nixpkgs (python-packages-base.nix, makeOverridablePythonPackage): a function of the old
          # arguments or an attribute set.
          drv
          // {
            overridePythonAttrs =
              f: buildPythonPackage (attrs // (if builtins.isFunction f then f attrs else f));
          };

      relaxDepsHook = mkDerivation {
        name = "python-relax-deps-hook";
        passthru.isSetupHook = true;
      };
      wheelUnpackHook = mkDerivation {
        name = "wheel-unpack-hook";
        passthru.isSetupHook = true;
      };

      simple =
        pname:
        buildPythonPackage {
          inherit pname;
          version = "0-double";
          format = "other";
        };

      torch = import ./torch.nix {
        inherit mkDerivation makeOverridable interp;
        spec = pin.torch;
        pkgs = final;
      };

      basePackages =
        pfinal:
        let
          callPackage =
            fn: args:
            let
              f = if builtins.isFunction fn then fn else import fn;
            in
            f (builtins.intersectAttrs (builtins.functionArgs f) (final // pfinal) // args);
        in
        lib.genAttrs names simple
        // pin.pythonModelled {
          inherit lib pfinal buildPythonPackage;
        }
        // {
          inherit buildPythonPackage callPackage;
          buildPythonApplication = buildPythonPackage;
          inherit (final) fetchPypi;
          python = interp;
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
