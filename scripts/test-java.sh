#!/usr/bin/env bash
# The Java bindings end to end:
#   0. scripts/check-bindings.sh (the generated classes and JNI field table match the header)
#   1. cargo build --release --lib (libgradtau.so)
#   2. compile the JNI glue bindings/java/src/main/c/gradtau_jni.c into libgradtau_jni.so next
#      to libgradtau.so (-Wall -Wextra -Werror; rpath $ORIGIN finds libgradtau.so) and check
#      that it exports only Java_ / JNI_ symbols
#   3. mvn -B test in bindings/java (JUnit 5 via Surefire, with -Xcheck:jni)
# Needs: cargo, python3 and gofmt (scripts/check-bindings.sh), gcc, a JDK 17+ (JAVA_HOME, or javac on PATH), Maven 3.8+. Maven fetches the
# pinned plugins and JUnit on its first run; later runs work offline (MAVEN_ARGS=-o).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export CARGO_TARGET_DIR=$TARGET
LIB=$TARGET/release

step() { printf '\n==== %s\n' "$*"; }

if [ -z "${JAVA_HOME:-}" ]; then
  javac=$(command -v javac || true)
  if [ -z "$javac" ]; then
    echo "no JDK: set JAVA_HOME or put javac on PATH" >&2
    exit 1
  fi
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$javac")")")
fi
export JAVA_HOME
if [ ! -f "$JAVA_HOME/include/jni.h" ]; then
  echo "$JAVA_HOME/include/jni.h not found: JAVA_HOME must point at a JDK, not a JRE" >&2
  exit 1
fi

step "generated bindings vs include/gradtau.h"
scripts/check-bindings.sh

step "cargo build --release --lib"
cargo build --release --lib

step "JNI glue: $LIB/libgradtau_jni.so"
# -Wl,-rpath,'$ORIGIN': the JNI library finds libgradtau.so in its own folder, wherever that
# folder is moved; --no-undefined: every gradtau_ symbol must resolve against libgradtau.so.
gcc -std=c11 -O2 -g -Wall -Wextra -Wpedantic -Werror -fPIC -shared \
  -Iinclude -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" \
  bindings/java/src/main/c/gradtau_jni.c -o "$LIB/libgradtau_jni.so" \
  -L"$LIB" -lgradtau -Wl,-rpath,'$ORIGIN' -Wl,--no-undefined
stray=$(nm -D --defined-only "$LIB/libgradtau_jni.so" | awk 'NF >= 3 {print $3}' \
  | grep -v -e '^Java_dev_gradtau_' -e '^JNI_OnLoad$' || true)
if [ -n "$stray" ]; then
  echo "libgradtau_jni.so exports symbols other than Java_dev_gradtau_* and JNI_OnLoad:" >&2
  printf '%s\n' "$stray" >&2
  exit 1
fi
echo "exports: $(nm -D --defined-only "$LIB/libgradtau_jni.so" | grep -c ' T ') functions, all Java_dev_gradtau_* / JNI_OnLoad"

step "mvn -B test (bindings/java)"
cd bindings/java
# shellcheck disable=SC2086
mvn -B ${MAVEN_ARGS:-} test \
  -Dgradtau.native.dir="$LIB" \
  -Dgradtau.jni.lib="$LIB/libgradtau_jni.so"

step "Java tests passed"
