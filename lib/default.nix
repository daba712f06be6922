# The nixpkgs-free layer: matrix.toml turned into variant specs, with builtins only, so it evaluates
# anywhere (no nixpkgs, no network) and `sglang-matrix show --json` can be checked against it.
{
  matrix ? builtins.fromTOML (builtins.readFile ../matrix.toml),
}:
let
  util = import ./util.nix;
  names = import ./names.nix;
  isaLib = import ./isa.nix { inherit matrix; };
  rules = import ./rules.nix { inherit matrix; };
  wheelFile = import ./wheel-file.nix;
  # [build] torch-cuda-libraries: library -> whether torch links it (absent: nixpkgs' default, it does).
  torchLibraries = matrix.build.torch-cuda-libraries or { };

  variantsOfLine =
    lineName:
    let
      line = matrix.lines.${lineName};
      pythons = util.toList line.python;
      cudas = util.toList line.cuda;
      # The first Python and CUDA are the line's defaults: only their variants get the short name.
      isDefault = c: c.python == builtins.head pythons && c.cuda == builtins.head cudas;
      target =
        name: matrix.targets.${name} or (throw "matrix.toml: lines.\"${lineName}\" names unknown target ${name}");
      combinations = rules.combinations line;
      # torch from the line's wheel: one file per system and Python, no ISAs, no source-build switches.
      wheelTorch = (line.torch.source or "nixpkgs") == "wheel";
      # A wheel-torch line shares one nixpkgs instance per system and CUDA among its targets, configured
      # for the union of their capabilities (oldest first): torch and the CUDA libraries, NCCL (built from
      # source for config.cudaCapabilities) included, are one store path for all of them.
      instanceCapabilities =
        system: cuda:
        builtins.sort (a: b: builtins.compareVersions a b < 0) (
          util.unique (
            util.concatMap (c: (target c.target).capabilities) (
              builtins.filter (c: c.system == system && c.cuda == cuda) combinations
            )
          )
        );
      ownInput = line.nixpkgs.input or null;
    in
    map (
      c:
      let
        t = target c.target;
        placeholders = c // {
          inherit lineName;
        };
        longName = names.expand line.long-name placeholders;
        available = builtins.filter (attr: rules.wheelAvailable line.wheels.${attr} c t.capabilities) (
          builtins.attrNames line.wheels
        );
      in
      {
        name = if isDefault c then names.expand line.short-name placeholders else longName;
        inherit longName;
        line = lineName;
        inherit (c)
          system
          target
          isa
          python
          cuda
          ;
        inherit (t) capabilities architecture gpus;
        cflags = if c.isa == null then [ ] else isaLib.flags c.isa;
        gccArch = if c.isa == null then null else isaLib.gccArch c.isa;
        # [build] torch-cuda-libraries switches a library off for every variant; a target's own
        # `cudnn = false` (Pascal: cuDNN dropped SM < 7.5) wins over the default. A torch wheel links
        # both as built.
        cudnn = wheelTorch || ((t.cudnn or true) && (torchLibraries.cudnn or true));
        cusparselt = wheelTorch || (torchLibraries.cusparselt or true);
        torchNvccFlags = if wheelTorch then [ ] else matrix.build.torch-nvcc-flags or [ ];
        maxJobsCap = matrix.build.max-jobs-cap;
        versions = builtins.listToAttrs (
          map (attr: {
            name = attr;
            value = line.wheels.${attr}.version;
          }) available
        ) // {
          torch = line.torch.version;
        };
        # Wheel file names for this variant (wheels with no build for it are left out).
        wheels = builtins.listToAttrs (
          map (attr: {
            name = attr;
            value = wheelFile {
              wheel = line.wheels.${attr};
              inherit (c) system python;
            };
          }) available
        );
        # Paths each wheel leaves out for this variant (dead device code, per matrix.toml's rules).
        pruned = builtins.listToAttrs (
          builtins.concatMap (
            attr:
            let
              paths = rules.prunedPaths line.wheels.${attr} c.system t.capabilities;
            in
            if paths == [ ] then
              [ ]
            else
              [
                {
                  name = attr;
                  value = paths;
                }
              ]
          ) available
        );
        nixpkgsKey =
          if wheelTorch then
            "${if ownInput == null then "nixpkgs" else ownInput}-${c.system}-cuda${c.cuda}"
          else
            (if ownInput == null then "" else "${ownInput}-")
            + "${c.system}-cuda${c.cuda}-${util.concatStringsSep "+" t.capabilities}";
      }
      # Only where they differ from a source-torch line on the flake's nixpkgs, so that such a line's
      # variant records (and so its drvPaths) do not move.
      // (if ownInput == null then { } else { nixpkgsInput = ownInput; })
      # [[lines.X.serve-defaults]]: SGLANG_* variables the launchers default, only where an entry matches.
      // (
        let
          defaults = builtins.foldl' (acc: rule: acc // rule.variables) { } (
            builtins.filter (rule: rules.matches rule c) (line.serve-defaults or [ ])
          );
        in
        if defaults == { } then { } else { serveDefaults = defaults; }
      )
      // (
        if wheelTorch then
          {
            torchSource = "wheel";
            instanceCapabilities = instanceCapabilities c.system c.cuda;
          }
        else
          { }
      )
    ) combinations;

  variants = util.concatMap variantsOfLine (builtins.attrNames matrix.lines);

  byName = builtins.listToAttrs (
    util.concatMap (v: [
      {
        name = v.name;
        value = v;
      }
      {
        name = v.longName;
        value = v;
      }
    ]) variants
  );
in
{
  inherit matrix variants byName;
  isas = isaLib;

  # Look a variant up by its short or long name, with a message that lists the known ones.
  variant =
    name:
    byName.${name}
      or (throw "sglang-matrix: no variant named ${name}; see `sglang-matrix list` for the known ones");

  # The release line's data for a variant (wheels, requires, torch pin).
  lineOf = v: matrix.lines.${v.line};

  # Variants that can share one nixpkgs instance (same capabilities, CUDA and system).
  nixpkgsKeys = util.unique (map (v: v.nixpkgsKey) variants);

  # The flake inputs the variants build against: `nixpkgs`, and each line's own ([lines.X.nixpkgs]).
  nixpkgsInputs = util.unique (map (v: v.nixpkgsInput or "nixpkgs") variants);

  inherit wheelFile;

  # The cudaPackages attributes of the runtime JIT's CUDA_HOME (pkgs/cuda-home.nix): [jit-headers]'s
  # `always` and every package its header table names, each once, sorted. tools/sglang_matrix/jit_headers.py
  # computes the same list (a test compares them) and checks the table against the wheels' real headers.
  jitCudaParts =
    let
      table = matrix.jit-headers or { };
    in
    builtins.sort builtins.lessThan (
      util.unique ((table.always or [ ]) ++ builtins.attrValues (table.cuda or { }))
    );

  defaultVariant = matrix.build.default-variant;
}
