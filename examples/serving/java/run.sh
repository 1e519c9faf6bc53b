#!/usr/bin/env bash
# Builds what the Java example service needs from this checkout when it is missing or out of
# date (libgradtau.so, the JNI glue next to it, the binding's jar, Server.class), then runs the
# service with the arguments given (--port P ...). Build output goes to stderr; the service's
# stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
LIB=$TARGET/release
BINDING=$ROOT/bindings/java
CLASSES=$TARGET/serving-java

if [ -z "${JAVA_HOME:-}" ]; then
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
fi

# Whether $1 is missing or older than any of the other paths (files or folders of sources).
stale() {
  local out=$1
  shift
  [ ! -e "$out" ] && return 0
  [ -n "$(find "$@" -newer "$out" -type f -print -quit)" ]
}

{
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --lib)
  if stale "$LIB/libgradtau_jni.so" "$BINDING/src/main/c" "$ROOT/include/gradtau.h" "$LIB/libgradtau.so"; then
    gcc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared \
      -I"$ROOT/include" -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" \
      "$BINDING/src/main/c/gradtau_jni.c" -o "$LIB/libgradtau_jni.so" \
      -L"$LIB" -lgradtau -Wl,-rpath,'$ORIGIN'
  fi
  jar=$(ls -t "$BINDING"/target/gradtau-*.jar 2>/dev/null | head -n 1 || true)
  if [ -z "$jar" ] || stale "$jar" "$BINDING/src/main" "$BINDING/pom.xml"; then
    # shellcheck disable=SC2086
    mvn -q -B ${MAVEN_ARGS:-} -f "$BINDING/pom.xml" package -DskipTests
    jar=$(ls -t "$BINDING"/target/gradtau-*.jar | head -n 1)
  fi
  if stale "$CLASSES/Server.class" "$ROOT/examples/serving/java/Server.java" "$jar"; then
    mkdir -p "$CLASSES"
    javac -Xlint:all -Werror -cp "$jar" -d "$CLASSES" "$ROOT/examples/serving/java/Server.java"
  fi
} 1>&2

exec java -Dgradtau.jni.path="$LIB/libgradtau_jni.so" -cp "$jar:$CLASSES" Server \
  --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
