#!/usr/bin/env bash
# Builds the Go example service against the gradtau package installed from this checkout
# (examples/serving/install.sh): its cgo flags come from pkg-config, as for any user of the
# module, with a replace onto this checkout's bindings/go. Then runs it with the arguments
# given (--port P ...). Build output goes to stderr; stdout carries "listening on P".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PREFIX=$("$ROOT/examples/serving/install.sh")
BIN=$(dirname "$PREFIX")/serving-go/gradtau-serving
{
  export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off
  cd "$ROOT/examples/serving/go"
  go build -o "$BIN" .
} 1>&2
cd "$ROOT"
exec "$BIN" --spec "$ROOT/data/specs/fashion_mlp.json" "$@"
