#!/usr/bin/env bash
# Creates the Python environment of the v2 recipe and the independent evaluation in
# .toolchain/models-py (once per requirements.txt content; a stamp file records it), Debian's cairo
# library for cairosvg, and the art packages of models/v2/art (npm ci). Prints the interpreter's path
# on the last line.
#   bash models/v2/setup.sh            # then: .toolchain/models-py/bin/python -m models.eval.independent …
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
req="$root/models/v2/requirements.txt"
venv="$root/.toolchain/models-py"
stamp="$venv/.piflow-$(sha256sum "$req" | cut -c1-16)"

if ! dpkg-query -W -f='${Status}' libcairo2 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libcairo2 >&2
fi
if [ ! -f "$stamp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  touch "$stamp"
fi
# The artwork and names the v2 data set is made of (npm packages with their own lock file; never bundled).
art="$root/models/v2/art"
artstamp="$art/node_modules/.piflow-$(sha256sum "$art/package-lock.json" | cut -c1-16)"
if [ ! -f "$artstamp" ]; then
  source "$root/scripts/env.sh"
  (cd "$art" && npm ci --no-audit --no-fund >&2)
  touch "$artstamp"
fi
echo "$venv/bin/python"
