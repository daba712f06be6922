# @variant@: SGLang runtime environment (sglang-matrix).
# The body of every entry point of a variant (bin/python3, sglang-serve, sglang-resolve-model): pkgs/
# sglang-env.nix fills the placeholders (names between at-signs) with builtins.replaceStrings, and
# writeShellScript adds the shebang; tests/host_fixtures.py fills them the same way to run this very
# script on fake hosts.
export CUDA_HOME=@cudaHome@
export CUDA_PATH="$CUDA_HOME"
export PATH="$CUDA_HOME/bin:@binPath@${PATH:+:$PATH}"
export CPATH="$CUDA_HOME/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_HOME/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
: "${CC:=@hostCc@/bin/cc}" "${CXX:=@hostCc@/bin/c++}"
export CC CXX
# FlashInfer 0.6 keeps its JIT cache under $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer (the seed's
# FLASHINFER_JIT_DIR is a constant it derives from that, not a variable it reads). Its cache key
# embeds store paths, so each variant gets its own, writable, per user.
: "${FLASHINFER_WORKSPACE_BASE:=${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/@longName@}"
export FLASHINFER_WORKSPACE_BASE
# A PYTHONHOME from outside would point this interpreter at another standard library, and a PYTHONPATH
# would mix another environment's packages (built for another Python, CUDA or torch) into this one.
unset PYTHONHOME PYTHONPATH
# nixpkgs' glibc ignores the host's /etc/ld.so.cache: find the host's NVIDIA driver and expose its
# libraries, and nothing else of the host, through a private directory of symlinks (sglang_matrix/host/
# driver.py, loaded byte-compiled from its directory, without site or environment, to stay fast).
# SGLANG_MATRIX_DRIVER_DIR names the directory outright; SGLANG_MATRIX_DRIVER_SEARCH=0 turns the search off.
if [ "${SGLANG_MATRIX_DRIVER_SEARCH:-1}" != 0 ]; then
  _sglang_matrix_driver=$(@python@ -I -S -c 'import sys; sys.path[:0] = sys.argv[1:]; import driver
sys.exit(driver.main(["--link"]))' @driverSearch@) || _sglang_matrix_driver=
  if [ -n "$_sglang_matrix_driver" ]; then
    export LD_LIBRARY_PATH="$_sglang_matrix_driver${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"@driverExports@
  fi
  unset _sglang_matrix_driver
fi
# What this environment was built as, for sglang-serve's preflight (sglang_matrix/host/record.py).
export SGLANG_MATRIX_RECORD=@record@@serveDefaults@
exec @exec@ "$@"
