#!/usr/bin/env bash
# gradtau as its users get it, from outside this repository:
#   1. the README's install commands (the "Install" section's blocks are read from README.md
#      and run as they stand): the CMake build, `cmake --install` into a fresh prefix, and
#      `mvn install` of the Java jar with its native libraries inside
#   2. the installed library: SONAME and symlinks (readelf -d), the stripped size (printed;
#      at most 5 MB), the CMake version file refusing another compatibility line
#   3. in temporary directories, each with the README's commands for its language: a C
#      program through pkg-config, a C++ CMake project linked shared then static, a Go module
#      of its own, and a Maven project depending on the installed jar. Each trains on the
#      embedded digits data, removes class 3 with ∇τ and checks the audit.
#   4. the library crate packages for crates.io without the CLI's dependencies
# Needs what scripts/test-native.sh, test-go.sh and test-java.sh need (cmake, pkg-config, a C/C++
# compiler, Go, a JDK and Maven). Go works offline (GOPROXY=off, the binding through a
# `replace`); Maven fetches the jar and enforcer plugins on its first run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export CARGO_TARGET_DIR=$TARGET
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gradtau-packaging.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The README's commands use these two.
export PREFIX=$WORK/prefix GRADTAU_SRC=$ROOT
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
ABI=$(sed -n 's/^#define GRADTAU_ABI_VERSION \([0-9]*\)$/\1/p' include/gradtau.h)
MAX_STRIPPED_BYTES=$((5 * 1024 * 1024))

step() { printf '\n==== %s\n' "$*"; }

# The README block marked `<!-- test-packaging: NAME -->`, run with bash in directory $2.
readme_block() {
  awk -v tag="<!-- test-packaging: $1 -->" '
    $0 == tag { found = 1; next }
    found && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }' README.md
}
run_readme() {
  local block
  block=$(readme_block "$1")
  if [ -z "$block" ]; then
    echo "README.md has no block marked <!-- test-packaging: $1 -->" >&2
    exit 1
  fi
  printf '%s\n' "$block" | sed 's/^/  $ /'
  (cd "$2" && bash -euo pipefail -c "$block")
}

step "install: the README's commands, into a fresh prefix ($PREFIX)"
run_readme install "$ROOT"

step "the installed shared library"
LIBDIR=$PREFIX/lib
soname=$(readelf -d "$LIBDIR/libgradtau.so.$VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
echo "SONAME $soname"
[ "$soname" = "libgradtau.so.$ABI" ] || { echo "SONAME is '$soname', want libgradtau.so.$ABI" >&2; exit 1; }
[ "$(readlink "$LIBDIR/libgradtau.so")" = "libgradtau.so.$ABI" ] \
  && [ "$(readlink "$LIBDIR/libgradtau.so.$ABI")" = "libgradtau.so.$VERSION" ] \
  || { echo "want libgradtau.so -> libgradtau.so.$ABI -> libgradtau.so.$VERSION" >&2; ls -l "$LIBDIR" >&2; exit 1; }
if readelf -S "$LIBDIR/libgradtau.so.$VERSION" | grep -q '\.debug_info'; then
  echo "the installed libgradtau.so.$VERSION carries debug info" >&2
  exit 1
fi
strip -o "$WORK/stripped.so" "$LIBDIR/libgradtau.so.$VERSION"
installed=$(stat -c %s "$LIBDIR/libgradtau.so.$VERSION")
stripped=$(stat -c %s "$WORK/stripped.so")
awk -v v="$VERSION" -v i="$installed" -v s="$stripped" 'BEGIN {
  printf "libgradtau.so.%s: %d bytes installed (%.2f MB), %d bytes stripped (%.2f MB; limit 5 MB)\n",
         v, i, i / 1048576, s, s / 1048576 }'
[ "$stripped" -le "$MAX_STRIPPED_BYTES" ] || { echo "the stripped library is over 5 MB" >&2; exit 1; }
for f in include/gradtau.h include/gradtau.hpp lib/libgradtau.a lib/libgradtau_jni.so \
         lib/cmake/gradtau/gradtauConfig.cmake lib/cmake/gradtau/gradtauConfigVersion.cmake \
         lib/pkgconfig/gradtau.pc; do
  [ -f "$PREFIX/$f" ] || { echo "missing from the install: $f" >&2; exit 1; }
done
readelf -d "$LIBDIR/libgradtau_jni.so" | grep -q "NEEDED.*\[libgradtau.so.$ABI\]" \
  || { echo "libgradtau_jni.so does not depend on libgradtau.so.$ABI" >&2; exit 1; }
stray=$(nm -D --defined-only "$LIBDIR/libgradtau_jni.so" | awk 'NF >= 3 {print $3}' \
  | grep -v -e '^Java_dev_gradtau_' -e '^JNI_OnLoad$' || true)
[ -z "$stray" ] || { echo "libgradtau_jni.so exports more than Java_dev_gradtau_* / JNI_OnLoad: $stray" >&2; exit 1; }
echo "SONAME, links, size, layout: ok"

step "CMake version file: $VERSION accepts its own line and refuses others"
IFS=. read -r major minor _ <<<"$VERSION"
if [ "$major" = 0 ]; then incompatible=("0.$((minor + 1))" "1.0"); else incompatible=("$((major + 1)).0"); fi
for want in "$major.$minor" "${incompatible[@]}"; do
  mkdir -p "$WORK/find-$want"
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(probe LANGUAGES C)\nfind_package(gradtau %s CONFIG REQUIRED)\n' \
    "$want" >"$WORK/find-$want/CMakeLists.txt"
  if cmake -S "$WORK/find-$want" -B "$WORK/find-$want/build" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null 2>&1; then
    found=yes
  else
    found=no
  fi
  expect=no
  [ "$want" = "$major.$minor" ] && expect=yes
  echo "find_package(gradtau $want CONFIG): found=$found"
  [ "$found" = "$expect" ] || { echo "expected found=$expect" >&2; exit 1; }
done

step "C program with pkg-config (no rpath flags of its own), from $WORK/c"
mkdir -p "$WORK/c"
cp tests/cmake-consumer/client.c "$WORK/c/"
run_readme c "$WORK/c"
[ "$(PKG_CONFIG_PATH=$LIBDIR/pkgconfig pkg-config --modversion gradtau)" = "$VERSION" ] \
  || { echo "gradtau.pc does not say version $VERSION" >&2; exit 1; }

step "C++ CMake project, shared then static, from $WORK/cmake"
cp -r tests/cmake-consumer "$WORK/cmake"
run_readme cmake "$WORK/cmake"
readelf -d "$WORK/cmake/build/server" | grep -q "NEEDED.*\[libgradtau.so.$ABI\]" \
  || { echo "the shared consumer does not record libgradtau.so.$ABI" >&2; exit 1; }
if readelf -d "$WORK/cmake/build-static/server" | grep -q 'NEEDED.*libgradtau'; then
  echo "the static consumer still needs libgradtau.so" >&2
  exit 1
fi

step "Go module of its own, from $WORK/go"
cp -r tests/consumers/go "$WORK/go"
GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1 run_readme go "$WORK/go"

step "Maven project depending on the installed jar, from $WORK/java"
cp -r tests/consumers/java "$WORK/java"
run_readme java "$WORK/java"
# The override is honoured: with -Dgradtau.native=system and nothing on java.library.path,
# loading must fail (rather than fall back to the bundled copies).
jar=$HOME/.m2/repository/dev/gradtau/gradtau/$VERSION/gradtau-$VERSION.jar
if java -Dgradtau.native=system -cp "$WORK/java/target/classes:$jar" example.RemoveClass >"$WORK/java/system.log" 2>&1; then
  echo "-Dgradtau.native=system loaded libraries that are not on java.library.path" >&2
  exit 1
fi
grep -q 'System.loadLibrary("gradtau_jni")' "$WORK/java/system.log" \
  || { cat "$WORK/java/system.log" >&2; exit 1; }
echo "-Dgradtau.native=system without java.library.path: refused, as it should"
leftover=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'gradtau-native-*' -user "$(id -u)" 2>/dev/null || true)
[ -z "$leftover" ] || { echo "extraction directories left behind: $leftover" >&2; exit 1; }

step "cargo package: the library crate, without the CLI's dependencies"
cargo package --no-verify --allow-dirty -p gradtau --list >"$WORK/package.list"
grep -qx 'data/digits/digits.csv.gz' "$WORK/package.list" \
  || { echo "the crate does not carry the embedded digits data" >&2; exit 1; }
if grep -q -e '^bindings/' -e '^crates/' "$WORK/package.list"; then
  echo "the crate carries files of other packages" >&2
  exit 1
fi
cargo package --no-verify --allow-dirty -p gradtau --quiet
deps=$(cargo tree -p gradtau -e normal --prefix none | awk '{print $1}' | sort -u)
if printf '%s\n' "$deps" | grep -qx -e clap -e indicatif; then
  echo "the library depends on the CLI's crates" >&2
  exit 1
fi
echo "$(wc -l <"$WORK/package.list") files; dependencies: $(printf '%s\n' "$deps" | grep -vx gradtau | wc -l) crates, no clap or indicatif"

step "packaging tests passed"
