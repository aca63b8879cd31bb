#!/usr/bin/env bash
# Creates the Python environment of the v2 recipe and the independent evaluation in
# .toolchain/models-py (once per requirements.txt content; a stamp file records it), plus Debian's
# cairo library for cairosvg. Prints the interpreter's path on the last line.
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
echo "$venv/bin/python"
