# stdenv.mkDerivation for the double: a real `builtins.derivation` (so drvPath evaluates and differs when
# inputs differ) whose result also carries every attribute that was passed, like nixpkgs' does.
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
  mkDerivation =
    attrs:
    let
      env = attrs.env or { };
      clash = builtins.filter (n: attrs ? ${n}) (builtins.attrNames env);
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      drvAttrs = lib.filterAttrs (
        n: v: !(builtins.elem n [ "meta" "passthru" "env" "name" ]) && passable v
      ) attrs;
      outputs = attrs.outputs or [ "out" ];
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
    in
    if clash != [ ] then
      throw "mkDerivation: env attribute(s) ${toString clash} also given as derivation attributes"
    else
      attrs
      // (attrs.passthru or { })
      // drv
      // {
        inherit name;
        meta = attrs.meta or { };
        drvAttrs = attrs;
        overrideAttrs = f: mkDerivation (attrs // f attrs);
      };
in
mkDerivation
