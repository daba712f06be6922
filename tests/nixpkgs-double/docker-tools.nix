# dockerTools.streamLayeredImage and cacert for the double (NOT nixpkgs).
#
# nixpkgs: pkgs/build-support/docker/default.nix. The index holds no copy at the pin; the argument list below
# is the one documented in doc/build-helpers/images/dockertools.section.md @ 0148e16d1446003704803ecabb5a00cfea7d8568
# ("streamLayeredImage expects one argument with the following attributes": name tag fromImage contents
# config architecture created mtime uid gid uname gname maxLayers extraCommands fakeRootCommands
# enableFakechroot includeStorePaths includeNixDB passthru), which the code at 34b7a306c35b279929eebbdb43af071fd92d0d4b
# takes as a function without `...`. Newer code also takes meta, layeringPipeline and debug (PR #355189,
# 2024-11, added `debug` with the auto-layer default); their presence at the pin could not be read, so the
# double refuses them: sglang-matrix does not use them.
#
# What it derives as nixpkgs does (34b7a306): the result is a script derivation named "stream-<baseName>"
# whose passthru carries imageTag (the tag, or the hash part of the conf derivation's store path when the
# tag is null) and isExe = true; imageName is lib.toLower name; maxLayers must be > 1 (lib.assertMsg).
# The image config is a JSON file in the closure (baseJson: config, architecture, os = "linux").
#
# Stricter than nixpkgs (which passes `config` through to the image unchecked): config keys must be ones
# the Docker Image Specification v1.3 / OCI image config defines, so a misspelt key fails here.
{
  lib,
  mkDerivation,
  system,
}:
let
  configKeys = [
    "User"
    "ExposedPorts"
    "Env"
    "Entrypoint"
    "Cmd"
    "Volumes"
    "WorkingDir"
    "Labels"
    "StopSignal"
    "ArgsEscaped"
    "Memory"
    "MemorySwap"
    "CpuShares"
    "Healthcheck"
  ];
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);
  # nixpkgs: lib.toLower (lib/strings.nix), replaceStrings over the ASCII letters.
  toLower = builtins.replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (
    chars "abcdefghijklmnopqrstuvwxyz"
  );
  # nixpkgs: go.GOARCH of the host platform (defaultArchitecture).
  goarch =
    {
      x86_64-linux = "amd64";
      aarch64-linux = "arm64";
    }
    .${system};

  streamLayeredImage =
    {
      name,
      tag ? null,
      fromImage ? null,
      contents ? [ ],
      config ? { },
      architecture ? goarch,
      created ? "1970-01-01T00:00:01Z",
      mtime ? "1970-01-01T00:00:01Z",
      uid ? 0,
      gid ? 0,
      uname ? "root",
      gname ? "root",
      maxLayers ? 100,
      extraCommands ? "",
      fakeRootCommands ? "",
      enableFakechroot ? false,
      includeStorePaths ? true,
      includeNixDB ? false,
      passthru ? { },
    }:
    let
      badKeys = builtins.filter (k: !(builtins.elem k configKeys)) (builtins.attrNames config);
      baseName = baseNameOf name;
      baseJson = mkDerivation {
        name = "${baseName}-base.json";
        text = builtins.toJSON {
          inherit config architecture;
          os = "linux";
        };
      };
      contentsList = if builtins.isList contents then contents else [ contents ];
      customisationLayer = mkDerivation {
        name = "${baseName}-customisation-layer";
        paths = contentsList;
        inherit extraCommands fakeRootCommands enableFakechroot;
      };
      conf = mkDerivation {
        name = "${baseName}-conf.json";
        inherit
          fromImage
          maxLayers
          created
          mtime
          uid
          gid
          uname
          gname
          includeNixDB
          ;
        closureRoots = lib.optionals includeStorePaths [
          baseJson
          customisationLayer
        ];
      };
      imageTag =
        if tag != null then tag else builtins.head (lib.splitString "-" (baseNameOf conf.outPath));
    in
    if badKeys != [ ] then
      throw "dockerTools double: config key(s) ${toString badKeys} are not in the OCI image config"
    else if !(maxLayers > 1) then
      throw "the maxLayers argument of dockerTools.buildLayeredImage function must be greather than 1 (current value: ${toString maxLayers})"
    else
      mkDerivation {
        name = "stream-${baseName}";
        imageName = toLower name;
        inherit conf;
        passthru = passthru // {
          inherit imageTag;
          isExe = true;
          # Not nixpkgs attributes: what the double was asked for, for the tests to read.
          doubleArgs = {
            inherit
              name
              tag
              config
              architecture
              maxLayers
              extraCommands
              fakeRootCommands
              enableFakechroot
              includeStorePaths
              ;
            contents = contentsList;
          };
        };
      };
in
{
  dockerTools = {
    inherit streamLayeredImage;
  };
  # nixpkgs: pkgs/data/misc/cacert (the CA bundle at etc/ssl/certs/ca-bundle.crt).
  cacert = mkDerivation {
    pname = "nss-cacert";
    version = "3.117";
  };
}
