# The part of nixpkgs' `lib` that sglang-matrix uses, re-implemented on builtins for the test double.
# Same names and semantics as nixpkgs' lib at the pin; only what the flake and pkgs/ call exists here, so
# a call to anything else fails (as a misspelt name would against the real lib).
let
  lib = rec {
    inherit (builtins)
      attrNames
      attrValues
      concatStringsSep
      elem
      filter
      head
      listToAttrs
      mapAttrs
      replaceStrings
      ;
    concatMap = f: list: builtins.concatLists (map f list);
    # nixpkgs: lib/lists.nix (`concatLists = builtins.concatLists`).
    concatLists = builtins.concatLists;
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    concatMapStrings = f: list: concatStringsSep "" (map f list);
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    removeSuffix =
      suffix: s:
      let
        n = builtins.stringLength s;
        m = builtins.stringLength suffix;
      in
      if m <= n && builtins.substring (n - m) m s == suffix then builtins.substring 0 (n - m) s else s;
    unique = builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    # nixpkgs: lib/lists.nix, `intersectLists e = filter (x: elem x e)`: the order and the duplicates of
    # the second list survive.
    intersectLists = e: filter (x: elem x e);
    subtractLists = e: filter (x: !(elem x e));
    nameValuePair = name: value: { inherit name value; };
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    "mapAttrs'" = f: set: listToAttrs (mapAttrsToList f set);
    last = list: builtins.elemAt list (builtins.length list - 1);
    genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: as: if cond then as else { };
    filterAttrs = pred: set: removeAttrs set (filter (n: !(pred n set.${n})) (attrNames set));
    findFirst =
      pred: default: list:
      let
        found = filter pred list;
      in
      if found == [ ] then default else head found;
    splitString =
      sep: s: filter builtins.isString (builtins.split (replaceStrings [ "." ] [ "\\." ] sep) s);
    take = n: list: builtins.genList (i: builtins.elemAt list i) (if n < builtins.length list then n else builtins.length list);
    drop =
      n: list:
      let
        len = builtins.length list;
      in
      if n >= len then [ ] else builtins.genList (i: builtins.elemAt list (i + n)) (len - n);
    getAttrFromPath =
      path: set:
      builtins.foldl' (
        acc: name:
        acc.${name} or (throw "cannot find attribute '${concatStringsSep "." path}'")
      ) set path;
    getOutput = output: pkg: pkg.${output} or pkg;
    getLib = getOutput "lib";
    getDev = getOutput "dev";
    getBin = getOutput "out";
    makeBinPath = paths: concatStringsSep ":" (map (p: "${getBin p}/bin") paths);
    makeSearchPath =
      subDir: paths: concatStringsSep ":" (map (p: "${p}/${subDir}") (filter (p: p != null) paths));
    makeLibraryPath = paths: makeSearchPath "lib" (map getLib paths);
    escapeShellArg = arg: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    # nixpkgs: lib/strings.nix (`concatStrings = builtins.concatStringsSep ""`).
    concatStrings = concatStringsSep "";
    versions = {
      majorMinor =
        v:
        let
          parts = builtins.splitVersion v;
        in
        "${builtins.elemAt parts 0}.${builtins.elemAt parts 1}";
    };
    # lib.fileset, reduced to what sglang-matrix uses: a union of files copied as one source tree.
    fileset = {
      unions = paths: paths;
      toSource =
        { root, fileset }:
        let
          wanted = map toString fileset;
        in
        builtins.path {
          path = root;
          name = "source";
          # nixpkgs' fileset keeps a file listed, everything under a directory listed, and the
          # directories on the way to either.
          filter =
            path: _type:
            builtins.any (w: w == path || hasPrefix (path + "/") w || hasPrefix (w + "/") path) wanted;
        };
    };
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    licenses = {
      asl20 = {
        shortName = "asl20";
        free = true;
      };
      bsd3 = {
        shortName = "bsd3";
        free = true;
      };
      mit = {
        shortName = "mit";
        free = true;
      };
      # nixpkgs: lib/licenses.nix. CUDA's redistributables carry nvidiaCudaRedist (free = false).
      unfree = {
        shortName = "unfree";
        free = false;
      };
      # nixpkgs: lib/licenses.nix (shortName "unfree-redistributable"); NVIDIA's CUTLASS DSL wheels.
      unfreeRedistributable = {
        shortName = "unfree-redistributable";
        free = false;
      };
      nvidiaCudaRedist = {
        shortName = "CUDA EULA";
        free = false;
      };
    };
    sourceTypes = {
      fromSource = {
        isSource = true;
      };
      binaryNativeCode = {
        isSource = false;
      };
      binaryBytecode = {
        isSource = false;
      };
    };
    platforms = {
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
    };
    maintainers = { };
  };
in
lib
