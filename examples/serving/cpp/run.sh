#!/usr/bin/env bash
# Builds the C++ example service against the gradtau package installed from this checkout
# (into target/serving-prefix), then runs it with the arguments given (--port P ...).
# Build output goes to stderr; the service's stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PREFIX=$TARGET/serving-prefix
BUILD=$TARGET/serving-cpp
{
  cmake -S "$ROOT/cmake" -B "$TARGET/serving-package" -DGRADTAU_CARGO_TARGET_DIR="$TARGET" >/dev/null
  cmake --build "$TARGET/serving-package"
  cmake --install "$TARGET/serving-package" --prefix "$PREFIX" >/dev/null
  cmake -S "$ROOT/examples/serving/cpp" -B "$BUILD" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD"
} 1>&2
cd "$ROOT"
exec "$BUILD/gradtau_serving" --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
