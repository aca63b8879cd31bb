# Sourced by the set-up scripts: puts a Node >= 22.12 first on PATH.
# Current wrangler, vitest and ky need Node 22.12+; machines that ship an older Node (Debian 12 has 20)
# get one from the npm registry's `node` package, kept in .toolchain/ (git-ignored).
PIFLOW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIFLOW_ROOT

piflow_node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

if ! piflow_node_ok; then
  piflow_node_dir="$PIFLOW_ROOT/.toolchain/node"
  if [ ! -x "$piflow_node_dir/node_modules/node/bin/node" ]; then
    echo "piflow: system Node is $(node --version 2>/dev/null || echo missing); fetching Node 22 from the npm registry" >&2
    npm install --prefix "$piflow_node_dir" --no-save --no-package-lock --no-audit --no-fund node@22 >&2
  fi
  export PATH="$piflow_node_dir/node_modules/node/bin:$PATH"
fi
# onnxruntime-node's postinstall downloads CUDA libraries from a host these machines cannot reach; the CPU
# binaries ship inside the package. A GPU host that wants CUDA installs with PIFLOW_ORT_CUDA=1.
if [ "${PIFLOW_ORT_CUDA:-0}" != "1" ]; then export ONNXRUNTIME_NODE_INSTALL=skip; fi
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
