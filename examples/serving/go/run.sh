#!/usr/bin/env bash
# Builds the Go example service against the bindings of this checkout (bindings/go, linked
# to the libgradtau.so that `cargo build --release --lib` leaves in the target directory,
# the way scripts/test-go.sh links them), then runs it with the arguments given
# (--port P ...). Build output goes to stderr; the service's stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
LIB=$TARGET/release
BIN=$TARGET/serving-go/gradtau-serving
{
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --lib)
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=1
  export CGO_LDFLAGS="-L$LIB -Wl,-rpath,$LIB ${CGO_LDFLAGS:-}"
  cd "$ROOT/examples/serving/go"
  go build -o "$BIN" .
} 1>&2
cd "$ROOT"
exec "$BIN" --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
