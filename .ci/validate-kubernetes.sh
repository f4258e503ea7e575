#!/usr/bin/env bash
# Renders every kustomization under deploy/kubernetes (the base and each
# overlay) with `kubectl kustomize`, offline, and validates every object it
# prints against the Kubernetes schemas (.ci/kubernetes/validate.mjs,
# kubernetes-models). Run with a Node of 22 or later first on PATH (.ci/run
# uses the image's Node, .ci/image-node.sh); kubectl from .ci/install-kubectl.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
node --version
(cd "$ROOT/.ci/kubernetes" && npm ci --no-audit --no-fund --loglevel=error)
mapfile -t dirs < <(cd "$ROOT" && find deploy/kubernetes -name kustomization.yaml -printf '%h\n' | sort)
((${#dirs[@]} > 0)) || { echo "no kustomization under deploy/kubernetes" >&2; exit 1; }
for dir in "${dirs[@]}"; do
  echo "---- kubectl kustomize $dir"
  kubectl kustomize "$ROOT/$dir" | node "$ROOT/.ci/kubernetes/validate.mjs" "$dir"
done
echo "every object of ${#dirs[@]} kustomizations is valid"
