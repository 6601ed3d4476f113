#!/usr/bin/env bash
# Installs the Debian 12 packages deltagate builds and tests with. Idempotent; quiet when all present.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
      nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
      python3 python3-numpy python3-yaml clang libclang-rt-dev nodejs npm
      libicu-dev openssl curl
      python3-grpcio python3-protobuf prometheus  # the Python gRPC client test; promtool for /metrics
      gnuplot-nox)  # deltagate bench's PNG plots
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from outside Debian's packages on some machines: accept any working node + npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<< "${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deltagate: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
