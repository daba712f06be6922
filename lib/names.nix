# Variant names from the line's templates: {target} {isa} {python} {cuda} {line}, as in matrix.toml.
let
  util = import ./util.nix;
in
{
  expand =
    template:
    {
      line,
      lineName,
      targetName,
      isaName,
    }:
    builtins.replaceStrings
      [ "{target}" "{isa}" "{python}" "{cuda}" "{line}" ]
      [
        targetName
        isaName
        (util.dotsTo "" line.python)
        (util.dotsTo "_" line.cuda)
        (util.dotsTo "_" lineName)
      ]
      template;
}
