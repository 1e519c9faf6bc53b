#!/usr/bin/env bash
# The C and C++ side of gradtau, end to end:
#   1. cargo build --release (libgradtau.so / libgradtau.a)
#   2. regenerate include/gradtau.h with the pinned cbindgen and fail on any drift
#   3. the shared library exports only gradtau_ symbols (and Java_ ones for JNI)
#   4. the C tests (tests/c), -std=c11 -Wall -Wextra -Wpedantic -Werror, under
#      AddressSanitizer + UBSan (leak checking on), the concurrency tests under
#      ThreadSanitizer, and test_errors once more under valgrind
#   5. install the CMake package (cmake/) into a prefix
#   6. the C++ GoogleTest suite (tests/cpp) against that prefix, under ASan + UBSan, via ctest
# The installed package as a user gets it (SONAME, size, a C program through pkg-config and
# the CMake consumer, shared and static, built outside the repository) is
# scripts/test-packaging.sh.
# Needs: cargo, cbindgen 0.29.4 (cargo install cbindgen --version 0.29.4 --locked), gcc/g++,
# cmake >= 3.16, libgtest-dev, pkg-config; valgrind and ninja are used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

CBINDGEN_VERSION=0.29.4
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export CARGO_TARGET_DIR=$TARGET
LIB=$TARGET/release
WORK=$TARGET/native-tests
rm -rf "$WORK"
mkdir -p "$WORK"
GENERATOR=()
command -v ninja >/dev/null 2>&1 && GENERATOR=(-G Ninja)

step() { printf '\n==== %s\n' "$*"; }

step "cargo build --release --lib"
cargo build --release --lib

step "header drift: cbindgen $CBINDGEN_VERSION vs include/gradtau.h"
if ! command -v cbindgen >/dev/null 2>&1; then
  echo "cbindgen not found: cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
  exit 1
fi
have=$(cbindgen --version | awk '{print $2}')
if [ "$have" != "$CBINDGEN_VERSION" ]; then
  echo "cbindgen $have found, the header is generated with $CBINDGEN_VERSION" >&2
  exit 1
fi
cbindgen --quiet --config cbindgen.toml --output "$WORK/gradtau.h" .
if ! diff -u include/gradtau.h "$WORK/gradtau.h"; then
  echo "include/gradtau.h is stale: cbindgen --quiet --config cbindgen.toml --output include/gradtau.h ." >&2
  exit 1
fi
echo "header up to date"
# cbindgen parses the whole crate: a public constant of the Rust API that is not excluded in
# cbindgen.toml would leak into the C header as an unprefixed macro (FLOAT, DOUBLE, ...).
stray_macros=$(grep -E '^#define ' include/gradtau.h | awk '{print $2}' | grep -v '^GRADTAU_' || true)
if [ -n "$stray_macros" ]; then
  echo "macros without the GRADTAU_ prefix in include/gradtau.h (exclude them in cbindgen.toml):" >&2
  printf '%s\n' "$stray_macros" >&2
  exit 1
fi

step "exported symbols of libgradtau.so"
symbols=$(nm -D --defined-only "$LIB/libgradtau.so" | awk 'NF >= 3 {print $3}')
count=$(printf '%s\n' "$symbols" | grep -c '^gradtau_' || true)
stray=$(printf '%s\n' "$symbols" | grep -v -e '^gradtau_' -e '^Java_' || true)
if [ -n "$stray" ]; then
  echo "symbols outside the gradtau_ / Java_ prefixes:" >&2
  printf '%s\n' "$stray" >&2
  exit 1
fi
# Every function the header declares is exported, and nothing else.
declared=$(grep -oE '\bgradtau_[a-z0-9_]+\(' include/gradtau.h | tr -d '(' | sort -u)
exported=$(printf '%s\n' "$symbols" | grep '^gradtau_' | sort -u)
if [ "$declared" != "$exported" ]; then
  echo "header declarations and exports differ:" >&2
  diff <(printf '%s\n' "$declared") <(printf '%s\n' "$exported") >&2 || true
  exit 1
fi
echo "$count gradtau_ symbols, all declared in the header, nothing else exported"

step "C tests under AddressSanitizer + UBSan"
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -O1 -pthread -Iinclude)
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
LINK=(-L"$LIB" -lgradtau -lm -Wl,-rpath,"$LIB")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for src in tests/c/test_*.c; do
  name=$(basename "$src" .c)
  gcc "${CFLAGS[@]}" "${SAN[@]}" "$src" -o "$WORK/$name" "${LINK[@]}"
  echo "-- $name"
  "$WORK/$name"
done

step "C concurrency tests under ThreadSanitizer (readers during a run, publish hook)"
# tests/c/tsan.supp says which single gradtau copy is suppressed and why.
export TSAN_OPTIONS="halt_on_error=1 history_size=7 suppressions=$ROOT/tests/c/tsan.supp"
for name in test_threads test_live; do
  gcc "${CFLAGS[@]}" -fsanitize=thread "tests/c/$name.c" -o "$WORK/${name}_tsan" "${LINK[@]}"
  echo "-- $name (TSan)"
  "$WORK/${name}_tsan"
done
unset TSAN_OPTIONS

if command -v valgrind >/dev/null 2>&1; then
  step "C error-path test under valgrind (checks the Rust side's memory use too)"
  gcc "${CFLAGS[@]}" tests/c/test_errors.c -o "$WORK/test_errors_plain" "${LINK[@]}"
  # Invalid reads/writes and definite leaks fail the run. Undefined-value tracking is off:
  # optimised Rust code tests enum niches with wide loads that memcheck reports as
  # uninitialised (false positives); ASan + UBSan above cover the C side. "Possibly lost"
  # blocks are matrixmultiply's global thread pool.
  valgrind --quiet --error-exitcode=9 --undef-value-errors=no --leak-check=full \
    --errors-for-leak-kinds=definite \
    "$WORK/test_errors_plain"
else
  echo "SKIPPED valgrind run: valgrind not installed"
fi

step "install the CMake package"
PREFIX=$WORK/prefix
cmake -S cmake -B "$WORK/package" "${GENERATOR[@]}" -DGRADTAU_CARGO_TARGET_DIR="$TARGET" >/dev/null
cmake --build "$WORK/package"
cmake --install "$WORK/package" --prefix "$PREFIX" >/dev/null
for f in lib/libgradtau.so lib/libgradtau.a include/gradtau.h include/gradtau.hpp \
         lib/cmake/gradtau/gradtauConfig.cmake lib/cmake/gradtau/gradtauConfigVersion.cmake \
         lib/pkgconfig/gradtau.pc; do
  [ -f "$PREFIX/$f" ] || { echo "missing from the install: $f" >&2; exit 1; }
done
echo "installed into $PREFIX"

step "C++ GoogleTest suite (ASan + UBSan) via ctest"
cmake -S tests/cpp -B "$WORK/cpp" "${GENERATOR[@]}" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$WORK/cpp"
(cd "$WORK/cpp" && ctest --output-on-failure --timeout 120)

step "native tests passed"
