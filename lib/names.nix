# Variant names from the line's templates: {target} {isa} {python} {cuda} {line}, as in matrix.toml.
let
  util = import ./util.nix;
in
{
  expand =
    template: c:
    builtins.replaceStrings
      [ "{target}" "{isa}" "{python}" "{cuda}" "{line}" ]
      [
        c.target
        c.isa
        (util.dotsTo "" c.python)
        (util.dotsTo "_" c.cuda)
        (util.dotsTo "_" c.lineName)
      ]
      template;
}
