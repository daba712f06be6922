# A TEST DOUBLE of nixpkgs' module system (NOT nixpkgs' lib): evalModules, mkOption, the types, mkIf, mkMerge
# and the priorities, re-implemented on builtins for the NixOS module tests. Real nixpkgs' lib cannot be had
# on the machines this project is tested on (no GitHub, no Nix cache), and its code cannot be copied in, so
# this models its semantics where nix/module.nix meets them, each from nixpkgs' lib/modules.nix and
# lib/types.nix (described in nixpkgs' manual, "Writing NixOS Modules" and "Option Types"):
#
# - a module is an attribute set or a function of the arguments it names (config, options, lib, pkgs,
#   utils, name for a submodule), with `imports`, `options` and `config`, or only config;
# - a definition of an undeclared option fails ("The option `a.b' does not exist."), two declarations of
#   one option fail, a read-only option defined twice fails, an option read without a value fails;
# - mkIf/mkMerge/mkOverride are pushed down into attribute sets without evaluating a condition (so a
#   module's `config = mkIf cfg.enable { ... }` may read its own options), and discharged at the option;
#   the definitions of the highest priority win (mkForce 50, plain 100, mkDefault 1000, option default 1500);
# - types check each definition and merge them: str, bool, int, port (0-65535), singleLineStr, package
#   (one definition), nullOr, listOf (concatenated), attrsOf (merged per name), submodule (evaluated with
#   its definitions and `name`), oneOf, addCheck, lines, attrs, unspecified; equal values merge, different
#   ones conflict.
#
# Stricter than nixpkgs where it cannot know: no `_module.args`, no `disabledModules`, no `freeformType`.
{ lib }:
let
  inherit (builtins)
    attrNames
    concatLists
    concatStringsSep
    elem
    filter
    foldl'
    head
    isAttrs
    isFunction
    isList
    isString
    isInt
    isBool
    length
    listToAttrs
    mapAttrs
    tail
    ;
  concatMap = f: l: concatLists (map f l);
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  showOption = loc: concatStringsSep "." loc;

  isType = t: v: isAttrs v && (v._type or null) == t;
  isOption = isType "option";

  mkOption = attrs: attrs // { _type = "option"; };
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  defaultPriority = 100;
  optionDefaultPriority = 1500;

  # Distribute mkIf/mkMerge/mkOverride over an attribute set without evaluating a condition.
  pushDown =
    v:
    if isType "if" v then
      mapAttrs (_: mkIf v.condition) (pushDown v.content)
    else if isType "override" v then
      mapAttrs (_: mkOverride v.priority) (pushDown v.content)
    else if isType "merge" v then
      let
        parts = map pushDown v.contents;
        keys = unique (concatMap attrNames parts);
      in
      listToAttrs (
        map (k: {
          name = k;
          value = mkMerge (concatMap (p: if p ? ${k} then [ p.${k} ] else [ ]) parts);
        }) keys
      )
    else
      v;

  # Remove the properties at an option: [ { priority; value; } ].
  discharge =
    priority: v:
    if isType "if" v then
      if !isBool v.condition then
        throw "mkIf called with a non-Boolean condition"
      else if v.condition then
        discharge priority v.content
      else
        [ ]
    else if isType "merge" v then
      concatMap (discharge priority) v.contents
    else if isType "override" v then
      discharge v.priority v.content
    else
      [ { inherit priority; value = v; } ];

  # The definitions that count: those of the highest priority (lowest number), properties removed.
  effective =
    defs:
    let
      all = concatMap (d: discharge (d.priority or defaultPriority) d.value) defs;
      best = foldl' (m: d: if d.priority < m then d.priority else m) 10000 all;
    in
    filter (d: d.priority == best) all;

  # { defined; value } of one option or attrsOf element.
  mergeDefinitions =
    loc: type: defs:
    let
      live = effective defs;
      bad = filter (d: !(type.check d.value)) live;
    in
    if live == [ ] then
      { defined = false; }
    else if bad != [ ] then
      throw "A definition for option `${showOption loc}' is not of type `${type.description}'."
    else
      {
        defined = true;
        value = type.merge loc live;
      };

  mergeEqual =
    loc: defs:
    let
      first = (head defs).value;
    in
    if builtins.all (d: d.value == first) defs then
      first
    else
      throw "The option `${showOption loc}' has conflicting definition values.";

  mkType =
    {
      description,
      check ? _: true,
      merge ? mergeEqual,
      nestedOptions ? null,
    }:
    {
      _type = "option-type";
      inherit
        description
        check
        merge
        nestedOptions
        ;
    };

  types = rec {
    unspecified = mkType { description = "unspecified value"; };
    anything = unspecified;
    str = mkType {
      description = "string";
      check = isString;
    };
    singleLineStr = mkType {
      description = "(optionally newline-terminated) single-line string";
      check = s: isString s && builtins.match "[^\n]*\n?" s != null;
    };
    lines = mkType {
      description = "strings concatenated with \"\\n\"";
      check = isString;
      merge = _: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    bool = mkType {
      description = "boolean";
      check = isBool;
    };
    int = mkType {
      description = "signed integer";
      check = isInt;
    };
    port = mkType {
      description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
      check = v: isInt v && v >= 0 && v <= 65535;
    };
    path = mkType {
      description = "path";
      check = v: builtins.isPath v || (isString v && builtins.substring 0 1 v == "/");
    };
    package = mkType {
      description = "package";
      check = v: isAttrs v && (v.type or null) == "derivation" || isString v;
      merge =
        loc: defs:
        if length defs == 1 then
          (head defs).value
        else
          throw "The option `${showOption loc}' is defined multiple times.";
    };
    attrs = mkType {
      description = "attribute set";
      check = isAttrs;
      merge = _: defs: foldl' (a: d: a // d.value) { } defs;
    };
    enum =
      values:
      mkType {
        description = "one of ${concatStringsSep ", " (map builtins.toJSON values)}";
        check = v: elem v values;
      };
    nullOr =
      t:
      mkType {
        description = "null or ${t.description}";
        check = v: v == null || t.check v;
        merge =
          loc: defs:
          let
            nulls = filter (d: d.value == null) defs;
          in
          if length nulls == length defs then
            null
          else if nulls == [ ] then
            t.merge loc defs
          else
            throw "The option `${showOption loc}' is defined both null and not null.";
      };
    oneOf =
      ts:
      mkType {
        description = concatStringsSep " or " (map (t: t.description) ts);
        check = v: builtins.any (t: t.check v) ts;
      };
    addCheck =
      t: f:
      t
      // {
        check = v: t.check v && f v;
      };
    listOf =
      t:
      mkType {
        description = "list of ${t.description}";
        check = isList;
        merge =
          loc: defs:
          concatMap (
            d:
            concatMap (
              e:
              let
                r = mergeDefinitions (loc ++ [ "*" ]) t [ { value = e; } ];
              in
              if r.defined then [ r.value ] else [ ]
            ) d.value
          ) defs;
      };
    attrsOf =
      t:
      mkType {
        description = "attribute set of ${t.description}";
        check = v: isAttrs v && !(v ? _type);
        merge =
          loc: defs:
          let
            pieces = map (d: {
              inherit (d) priority;
              value = pushDown d.value;
            }) defs;
            keys = unique (concatMap (p: attrNames p.value) pieces);
            merged = map (k: {
              name = k;
              value = mergeDefinitions (loc ++ [ k ]) t (
                concatMap (
                  p:
                  if p.value ? ${k} then
                    [
                      {
                        inherit (p) priority;
                        value = p.value.${k};
                      }
                    ]
                  else
                    [ ]
                ) pieces
              );
            }) keys;
          in
          listToAttrs (
            map (m: {
              inherit (m) name;
              value = m.value.value;
            }) (filter (m: m.value.defined) merged)
          );
      };
    submodule =
      module:
      mkType {
        description = "submodule";
        check = v: isAttrs v || isFunction v;
        merge =
          loc: defs:
          (evalModules {
            modules = [ module ] ++ map (d: d.value) defs;
            specialArgs = {
              name = builtins.elemAt loc (length loc - 1);
            };
            prefix = loc;
          }).config;
      };
  };

  # Call a module function with the arguments it names (nixpkgs: lib/modules.nix applyModuleArgs).
  apply =
    args: m:
    if isFunction m then
      m (
        mapAttrs (
          n: _: args.${n} or (throw "module argument `${n}' is not available (the double passes: ${toString (attrNames args)})")
        ) (builtins.functionArgs m)
      )
    else
      m;
  load = args: m: apply args (if builtins.isPath m || isString m then import m else m);
  structured = m: m ? options || m ? config || m ? imports;
  collect =
    args: m:
    let
      loaded = load args m;
      norm =
        if structured loaded then
          {
            options = loaded.options or { };
            config = loaded.config or { };
            imports = loaded.imports or [ ];
          }
        else
          {
            options = { };
            config = removeAttrs loaded [ "_file" "key" "meta" ];
            imports = [ ];
          };
    in
    [ norm ] ++ concatMap (collect args) norm.imports;

  # Two declarations of one option fail; declarations of nested sets merge.
  mergeDecls =
    loc: a: b:
    if isOption a || isOption b then
      throw "The option `${showOption loc}' is declared more than once."
    else
      a
      // mapAttrs (k: v: if a ? ${k} then mergeDecls (loc ++ [ k ]) a.${k} v else v) b;

  evalNode =
    loc: decl: defs:
    if isOption decl then
      let
        t = decl.type or types.unspecified;
        all = defs ++ lib.optional (decl ? default) {
          priority = optionDefaultPriority;
          value = decl.default;
        };
        r =
          if (decl.readOnly or false) && length (effective defs) > 1 then
            throw "The option `${showOption loc}' is read-only, but it's set multiple times."
          else
            mergeDefinitions loc t all;
        value =
          if r.defined then r.value else throw "The option `${showOption loc}' is used but not defined.";
      in
      if decl ? apply then decl.apply value else value
    else
      let
        pieces = map (d: {
          priority = d.priority or defaultPriority;
          value = pushDown d.value;
        }) defs;
        keys = unique (concatMap (p: attrNames p.value) pieces);
        undeclared = filter (k: !(decl ? ${k})) keys;
      in
      if undeclared != [ ] then
        throw "The option `${showOption (loc ++ [ (head undeclared) ])}' does not exist."
      else
        mapAttrs (
          k: sub:
          evalNode (loc ++ [ k ]) sub (
            concatMap (
              p:
              if p.value ? ${k} then
                [
                  {
                    inherit (p) priority;
                    value = p.value.${k};
                  }
                ]
              else
                [ ]
            ) pieces
          )
        ) decl;

  evalModules =
    {
      modules,
      specialArgs ? { },
      prefix ? [ ],
    }:
    let
      args = specialArgs // {
        inherit config options;
        lib = fullLib;
      };
      all = concatMap (collect args) modules;
      options = foldl' (mergeDecls prefix) { } (map (m: m.options) all);
      config = evalNode prefix options (map (m: { value = m.config; }) all);
    in
    {
      inherit config options;
    };

  fullLib = lib // {
    inherit
      evalModules
      mkOption
      mkIf
      mkMerge
      mkOverride
      types
      ;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    "mapAttrs'" = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    inherit length;
    last = l: builtins.elemAt l (length l - 1);
  };
in
fullLib
