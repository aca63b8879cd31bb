#!/usr/bin/env bash
# Stage the v2 training set for the device machine (an H200 lent to some tasks: .library/device). A call
# carries at most 64 MiB together with the working tree (~35 MB), and the data set is ~88 MB (images
# 22 MB + MiniLM caption embeddings 66 MB, which the device cannot recompute: no MiniLM weights there,
# no network), so it travels in parts, one per call, to a machine that keeps carried paths while warm.
#
#   bash models/v2/gpu/stage.sh        # here: writes .stage/1 … .stage/N and prints the N device calls
#
# Each .stage/K holds one slice of an uncompressed tar of models/data/v2/{images64.npz,
# text-embeddings.npy} and MANIFEST (the number of parts and every part's sha256), so the last call
# (models/v2/gpu/train.sh) can tell a missing or damaged part from a good one.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=${DATA:-models/data/v2}
for f in images64.npz text-embeddings.npy; do
  [ -f "$DATA/$f" ] || { echo "stage: $DATA/$f missing (bash models/v2/resume-teacher.sh rebuilds it)" >&2; exit 1; }
done
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((2 * 1024 * 1024))  # the tree grows a little between staging and the calls (logs, notes)
rm -rf .stage
# what travels with every call: tracked files and untracked files git does not ignore
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
room=$((LIMIT - tree - MARGIN))
[ "$room" -gt $((4 * 1024 * 1024)) ] || { echo "stage: the tree is $tree bytes: no room left to carry data" >&2; exit 1; }
mkdir -p .stage/tmp
tar -cf .stage/tmp/data.tar -C "$DATA" images64.npz text-embeddings.npy
split -b "$room" -d -a 2 .stage/tmp/data.tar .stage/tmp/part.
parts=(.stage/tmp/part.*)
n=${#parts[@]}
{
  echo "parts $n"
  for p in "${parts[@]}"; do echo "part $(basename "$p") $(sha256sum "$p" | cut -d' ' -f1)"; done
} > .stage/tmp/MANIFEST
for i in $(seq 1 "$n"); do
  mkdir -p ".stage/$i"
  mv "${parts[$((i - 1))]}" ".stage/$i/"
  cp .stage/tmp/MANIFEST ".stage/$i/"
done
rm -rf .stage/tmp
echo "stage: $n parts of at most $room bytes (tree $tree bytes); device calls, in a row, each as soon as the last returns (the machine keeps carried paths only while warm, ~30 s):"
for i in $(seq 1 "$((n - 1))"); do
  echo "  run(command=\"bash models/v2/gpu/train.sh --receive\", carry=[\".stage/$i\"], timeout_s=180)"
done
echo "  run(command=\"bash models/v2/gpu/train.sh 5.5 2.5\", carry=[\".stage/$n\"], timeout_s=600)"
