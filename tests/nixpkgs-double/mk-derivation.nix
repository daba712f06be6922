# stdenv.mkDerivation for the double: a real `builtins.derivation` (so drvPath evaluates and differs when
# inputs differ) whose result also carries every attribute that was passed, like nixpkgs' does.
#
# Like nixpkgs' pkgs/stdenv/generic/make-derivation.nix (makeDerivationExtensible), it takes attributes or a
# function `finalAttrs: attrs`, and overrideAttrs layers on that fixed point: `finalAttrs` is the result of
# every layer, so a value the base derives from finalAttrs.pname (buildPythonPackage's `name`) follows a
# later layer's pname, and a layer's `prevAttrs.name` already carries that layer's own pname. `name`
# defaults to "${pname}-${version}" of the final attributes.
#
# meta checks (check-meta.nix), modelled where sglang-matrix meets them: an unfree license without
# config.allowUnfree, and meta.broken without config.allowBroken, refuse to evaluate the derivation (its
# drvPath and outPath throw); its other attributes still evaluate, as nixpkgs' do.
{ lib, system }:
let
  # What builtins.derivation can take as environment: strings, numbers, bools, paths, derivations and
  # lists of those. `env` is flattened in; meta, passthru and functions stay on the result only.
  passable =
    v:
    builtins.isString v
    || builtins.isInt v
    || builtins.isBool v
    || builtins.isPath v
    || builtins.isFloat v
    || v == null
    || (builtins.isAttrs v && v ? outPath)
    || (builtins.isList v && builtins.all passable v);

  fromFixedPoint =
    config: rattrs:
    let
      attrs = rattrs attrs;
      env = attrs.env or { };
      clash = builtins.filter (n: attrs ? ${n}) (builtins.attrNames env);
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      meta = attrs.meta or { };
      # Check inputs are inputs only while their phase runs (make-derivation.nix: `optionals doCheck
      # nativeCheckInputs`, `optionals doInstallCheck nativeInstallCheckInputs`, and the same for checkInputs).
      checkOnly = [
        "checkInputs"
        "nativeCheckInputs"
        "installCheckInputs"
        "nativeInstallCheckInputs"
      ];
      activeCheckInputs =
        lib.optionals (attrs.doCheck or false) ((attrs.nativeCheckInputs or [ ]) ++ (attrs.checkInputs or [ ]))
        ++ lib.optionals (attrs.doInstallCheck or false) (
          (attrs.nativeInstallCheckInputs or [ ]) ++ (attrs.installCheckInputs or [ ])
        );
      drvAttrs =
        lib.filterAttrs (
          n: v: !(builtins.elem n ([ "meta" "passthru" "env" "name" ] ++ checkOnly)) && passable v
        ) attrs
        // lib.optionalAttrs (activeCheckInputs != [ ]) {
          nativeBuildInputs = (attrs.nativeBuildInputs or [ ]) ++ activeCheckInputs;
        };
      outputs = attrs.outputs or [ "out" ];
      unfree = (meta.license or { }).free or true == false;
      refusal =
        if unfree && !(config.allowUnfree or false) then
          "Package ‘${name}’ has an unfree license (‘${meta.license.shortName}’), refusing to evaluate."
        else if (meta.broken or false) && !(config.allowBroken or false) then
          "Package ‘${name}’ is marked as broken, refusing to evaluate."
        else
          null;
      drv = derivation (
        drvAttrs
        // env
        // {
          inherit name system outputs;
          builder = "/bin/sh";
          args = [
            "-c"
            "echo 'nixpkgs double: not buildable' >&2; exit 1"
          ];
        }
      );
      refused = if refusal == null then { } else {
        drvPath = throw refusal;
        outPath = throw refusal;
      };
    in
    if clash != [ ] then
      throw "mkDerivation: env attribute(s) ${toString clash} also given as derivation attributes"
    else
      attrs
      // (attrs.passthru or { })
      // drv
      // refused
      // {
        inherit name meta;
        drvAttrs = attrs;
        # nixpkgs: overrideAttrs (finalAttrs: prevAttrs: { ... }) or (prevAttrs: { ... }).
        overrideAttrs =
          f0:
          let
            f =
              final: prev:
              let
                x = f0 prev;
              in
              if builtins.isFunction x then f0 final prev else x;
          in
          fromFixedPoint config (
            final:
            let
              prev = rattrs final;
            in
            prev // f final prev
          );
      };

  mkDerivation =
    config: fnOrAttrs:
    fromFixedPoint config (if builtins.isFunction fnOrAttrs then fnOrAttrs else (_: fnOrAttrs));
in
mkDerivation
