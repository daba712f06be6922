# Variant names from the line's templates: {target} {isa} {arch} {python} {cuda} {line}, as in matrix.toml.
let
  util = import ./util.nix;
in
{
  expand =
    template: c:
    builtins.replaceStrings
      [ "{target}" "{isa}" "{arch}" "{python}" "{cuda}" "{line}" ]
      [
        c.target
        (if c.isa == null then "" else c.isa)
        # The CPU part of the Nix system ("x86_64"): names stay unique across systems without an ISA.
        (builtins.head (builtins.split "-" c.system))
        (util.dotsTo "" c.python)
        (util.dotsTo "_" c.cuda)
        (util.dotsTo "_" c.lineName)
      ]
      template;
}
