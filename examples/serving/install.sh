#!/usr/bin/env bash
# Installs the gradtau package of this checkout into target/serving-prefix (the README's
# install commands, run incrementally), so that the example services build against an
# installed library the way a user's project does. Prints the prefix on stdout; build output
# goes to stderr. With --jar, also installs the Java jar into the local Maven repository.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
PREFIX=$TARGET/serving-prefix
{
  cmake -S "$ROOT/cmake" -B "$TARGET/serving-package" -DCMAKE_BUILD_TYPE=Release \
    -DGRADTAU_CARGO_TARGET_DIR="$TARGET" >/dev/null
  cmake --build "$TARGET/serving-package"
  cmake --install "$TARGET/serving-package" --prefix "$PREFIX" >/dev/null
  if [ "${1:-}" = --jar ]; then
    mvn -B -q -f "$ROOT/bindings/java/pom.xml" install -DskipTests -Dgradtau.native.dir="$PREFIX/lib"
  fi
} 1>&2
echo "$PREFIX"
