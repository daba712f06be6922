# A wheel's file name and fetchPypi fields for one system, or null where the wheel has no build for it.
# The tag comes from matrix.toml: "any" for pure wheels, else per system, with {python} as "312".
{
  wheel,
  system,
  python,
}:
let
  raw = wheel.tags.any or (wheel.tags.${system} or null);
in
if raw == null then
  null
else
  "${wheel.pname}-${wheel.version}-${builtins.replaceStrings [ "{python}" ] [ (builtins.replaceStrings [ "." ] [ "" ] python) ] raw}.whl"
