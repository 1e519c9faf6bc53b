#!/usr/bin/env bash
# The Go bindings (bindings/go), end to end and offline:
#   0. scripts/check-bindings.sh (the generated *_gen.go files match include/gradtau.h)
#   1. cargo build --release --lib (libgradtau.so / .a)
#   2. gofmt check and go vet
#   3. go test -race with GODEBUG=cgocheck=1
#   4. go test -race once more with -tags gradtau_gcdebug (runtime.GC() after every C call)
# Needs: cargo, python3, Go >= 1.21 with cgo and a C compiler. No module downloads: the bindings use
# the standard library only, and GOTOOLCHAIN=local keeps go from fetching a toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export CARGO_TARGET_DIR=$TARGET
LIB=$TARGET/release

step() { printf '\n==== %s\n' "$*"; }

step "generated bindings vs include/gradtau.h"
scripts/check-bindings.sh

step "cargo build --release --lib"
cargo build --release --lib

# -tags gradtau_devtree: link this checkout's cargo build, not an installed gradtau.pc (the
# installed package is tested from outside the repository by scripts/test-packaging.sh).
export GOFLAGS="-mod=mod -tags=gradtau_devtree" GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=1
# The package's own #cgo flags point at $ROOT/target/release; this adds the actual target
# dir (a CARGO_TARGET_DIR elsewhere) in front of it.
export CGO_LDFLAGS="-L$LIB -Wl,-rpath,$LIB ${CGO_LDFLAGS:-}"
cd bindings/go

step "gofmt + go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "not gofmt-ed: $unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags gradtau_devtree,gradtau_gcdebug ./...

step "go test -race (GODEBUG=cgocheck=1)"
GODEBUG=cgocheck=1 go test -race -count=1 ./...

step "go test -race -tags gradtau_gcdebug (GC after every C call)"
GODEBUG=cgocheck=1 go test -race -count=1 -tags gradtau_devtree,gradtau_gcdebug ./...

echo
echo "test-go: ok"
