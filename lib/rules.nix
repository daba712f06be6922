# Which combinations of a release line are variants: matrix.toml's rules, read as data.
#   - an ISA only on the systems it fits ([isas.*].systems);
#   - a target only with a CUDA that builds all its capabilities ([capabilities] min-cuda/max-cuda);
#   - no combination that an `exclude` entry matches (every field it names, each a value or a list).
# The order is Python, CUDA, system, target, ISA, each as listed: the same order as the Python tool's.
{ matrix }:
let
  util = import ./util.nix;
  versionAtLeast = a: b: builtins.compareVersions a b >= 0;
  capabilityBuilds =
    cuda: cap:
    let
      info = matrix.capabilities.${cap};
    in
    versionAtLeast cuda info.min-cuda && (!(info ? max-cuda) || versionAtLeast info.max-cuda cuda);
  prune = matrix.build.prune-device-code or false;
  targetBuilds = cuda: target: builtins.all (capabilityBuilds cuda) matrix.targets.${target}.capabilities;
  # A rule (an `exclude` or `serve-defaults` entry) matches a combination when every field it names does
  # (`reason` and `variables` are not fields).
  matches =
    rule: c:
    builtins.all (field: builtins.elem c.${field} (util.toList rule.${field})) (
      builtins.filter (field: field != "reason" && field != "variables") (builtins.attrNames rule)
    );
  excluded = line: c: builtins.any (rule: matches rule c) (line.exclude or [ ]);
in
{
  inherit matches;

  combinations =
    line:
    builtins.filter (c: !(excluded line c)) (
      util.concatMap (
        python:
        util.concatMap (
          cuda:
          util.concatMap (
            system:
            util.concatMap (
              target:
              map
                (isa: {
                  inherit
                    python
                    cuda
                    system
                    target
                    isa
                    ;
                })
                (
                  # A line whose torch is a wheel has no ISAs: one combination, ISA null.
                  builtins.filter (
                    isa: (isa == null || builtins.elem system matrix.isas.${isa}.systems) && targetBuilds cuda target
                  ) (line.isas or [ null ])
                )
            ) line.targets
          ) line.systems
        ) (util.toList line.cuda)
      ) (util.toList line.python)
    );

  # A wheel is in a variant when it has a build for the system and, if it names CUDA releases, for the
  # variant's CUDA (matrix.toml's `cuda` on a wheel); with pruning on, also when the variant has one of
  # its `keep-for` capabilities.
  wheelAvailable =
    wheel: c: capabilities:
    (wheel.tags ? any || wheel.tags ? ${c.system})
    && (!(wheel ? cuda) || builtins.elem c.cuda (util.toList wheel.cuda))
    && (!prune || !(wheel ? keep-for) || builtins.any (cap: builtins.elem cap wheel.keep-for) capabilities);

  # With pruning on: the `prune` paths of a wheel that none of the variant's capabilities uses, among the
  # rules about its system's wheel (`systems`, when a rule names them).
  prunedPaths =
    wheel: system: capabilities:
    if !prune then
      [ ]
    else
      map (rule: rule.path) (
        builtins.filter (
          rule:
          if rule ? systems && !(builtins.elem system rule.systems) then
            false
          else if rule ? keep-for then
            !(builtins.any (cap: builtins.elem cap rule.keep-for) capabilities)
          else if rule ? keep-but then
            !(builtins.any (cap: !(builtins.elem cap rule.keep-but)) capabilities)
          else
            true
        ) (wheel.prune or [ ])
      );
}
