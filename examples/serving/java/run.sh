#!/usr/bin/env bash
# Builds the Java example service the way a user outside this repository would: gradtau
# installed from this checkout (into target/serving-prefix, the README's "Install" commands,
# shared with the C++ service), the binding's jar with both native libraries inside, and
# Server.java compiled against that jar alone; then runs the service with the arguments given
# (--port P ...). Each step is skipped when its output is newer than its inputs. Build output
# goes to stderr; the service's stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PREFIX=$("$ROOT/examples/serving/install.sh")
BINDING=$ROOT/bindings/java
CLASSES=$(dirname "$PREFIX")/serving-java

# Whether $1 is missing or older than any file under the other paths.
stale() {
  local out=$1
  shift
  [ ! -e "$out" ] && return 0
  [ -n "$(find "$@" -newer "$out" -type f -print -quit)" ]
}

{
  jar=$(ls -t "$BINDING"/target/gradtau-*.jar 2>/dev/null | head -n 1 || true)
  if [ -z "$jar" ] || stale "$jar" "$BINDING/src/main" "$BINDING/pom.xml" "$PREFIX/lib"; then
    # shellcheck disable=SC2086
    mvn -q -B ${MAVEN_ARGS:-} -f "$BINDING/pom.xml" package -DskipTests \
      -Dgradtau.native.dir="$PREFIX/lib"
    jar=$(ls -t "$BINDING"/target/gradtau-*.jar | head -n 1)
  fi
  if stale "$CLASSES/Server.class" "$ROOT/examples/serving/java/Server.java" "$jar"; then
    mkdir -p "$CLASSES"
    javac -Xlint:all -Werror -cp "$jar" -d "$CLASSES" "$ROOT/examples/serving/java/Server.java"
  fi
} 1>&2

cd "$ROOT"
exec java -cp "$jar:$CLASSES" Server --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
