#!/usr/bin/env bash
# Builds the C++ example service against the gradtau package installed from this checkout
# (examples/serving/install.sh), then runs it with the arguments given (--port P ...).
# Build output goes to stderr; the service's stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PREFIX=$("$ROOT/examples/serving/install.sh")
BUILD=$(dirname "$PREFIX")/serving-cpp
{
  cmake -S "$ROOT/examples/serving/cpp" -B "$BUILD" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD"
} 1>&2
cd "$ROOT"
exec "$BUILD/gradtau_serving" --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
