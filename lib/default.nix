# The nixpkgs-free layer: matrix.toml turned into variant specs, with builtins only, so it evaluates
# anywhere (no nixpkgs, no network) and `sglang-matrix show --json` can be checked against it.
{
  matrix ? builtins.fromTOML (builtins.readFile ../matrix.toml),
}:
let
  util = import ./util.nix;
  names = import ./names.nix;
  isaLib = import ./isa.nix { inherit matrix; };

  wheelFile = import ./wheel-file.nix;

  variantsOfLine =
    lineName:
    let
      line = matrix.lines.${lineName};
      target =
        name: matrix.targets.${name} or (throw "matrix.toml: lines.\"${lineName}\" names unknown target ${name}");
    in
    util.concatMap (
      system:
      util.concatMap (
        targetName:
        map
          (
            isaName:
            let
              t = target targetName;
              capabilities = t.capabilities;
              # Wheel file names for this system (a wheel with no build here is left out).
              wheels = builtins.listToAttrs (
                util.concatMap (
                  attr:
                  let
                    file = wheelFile {
                      wheel = line.wheels.${attr};
                      inherit system;
                      python = line.python;
                    };
                  in
                  if file == null then [ ] else [ { name = attr; value = file; } ]
                ) (builtins.attrNames line.wheels)
              );
            in
            {
              name = names.expand line.short-name { inherit line lineName targetName isaName; };
              longName = names.expand line.long-name { inherit line lineName targetName isaName; };
              line = lineName;
              inherit system capabilities wheels;
              target = targetName;
              isa = isaName;
              architecture = t.architecture;
              gpus = t.gpus;
              cflags = isaLib.flags isaName;
              python = line.python;
              cuda = line.cuda;
              cudnn = t.cudnn or true;
              maxJobsCap = matrix.build.max-jobs-cap;
              versions = builtins.mapAttrs (_: w: w.version) line.wheels // {
                torch = line.torch.version;
              };
              nixpkgsKey = "${system}-cuda${line.cuda}-${util.concatStringsSep "+" capabilities}";
            }
          )
          (builtins.filter (isaName: isaLib.fits isaName system) line.isas)
      ) line.targets
    ) line.systems;

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
      or (throw "sglang-matrix: no variant named ${name}; known: ${util.concatStringsSep " " (map (v: v.name) variants)}");

  # The release line's data for a variant (wheels, requires, torch pin).
  lineOf = v: matrix.lines.${v.line};

  # Variants that can share one nixpkgs instance (same capabilities, CUDA and system).
  nixpkgsKeys = util.unique (map (v: v.nixpkgsKey) variants);

  inherit wheelFile;
  defaultVariant = matrix.build.default-variant;
}
