# The few list and string helpers the nixpkgs-free layer needs, on builtins alone (nixpkgs' lib is not
# available here by design).
rec {
  concatMap = f: list: builtins.concatLists (map f list);
  concatStringsSep = builtins.concatStringsSep;
  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
  replaceAll = from: to: s: builtins.replaceStrings from to s;
  dotsTo = sep: s: builtins.replaceStrings [ "." ] [ sep ] s;
  # matrix.toml allows one value or a list of values in several places.
  toList = x: if builtins.isList x then x else [ x ];
}
