#!/usr/bin/env bash
# Runs every test suite of gradtau. This is the README's test command and what CI calls.
#   scripts/test-all.sh          everything
#   SKIP_LINT=1 scripts/test-all.sh   skip fmt/clippy (for quick local runs)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

suites=0
step() { suites=$((suites + 1)); printf '\n==== %s\n' "$*"; }

if [ "${SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy (warnings are errors)"
  cargo clippy --all-targets -- -D warnings
  step "cargo doc (warnings are errors: broken or ambiguous links)"
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items
fi

step "CUDA feature: builds with no toolkit (cudarc loads the libraries at run time), clippy clean"
if [ "${SKIP_LINT:-0}" != 1 ]; then
  cargo clippy --features cuda --all-targets -- -D warnings
else
  cargo build --features cuda
fi

step "Rust unit and integration tests"
cargo test --release
# The GPU tests again, built with the cuda feature: they pass by skipping where no CUDA
# device is usable, and say so out loud.
cargo test --release --features cuda --test cuda_parity --test cuda_limits --test cuda_e2e -- --nocapture
# Every kernel file compiled to machine code by NVRTC, which needs no GPU: .ci/run installs
# it from PyPI and sets GRADTAU_NVRTC_LIB; without it the test skips loudly.
NVRTC_PATH=${GRADTAU_NVRTC_LIB:+$GRADTAU_NVRTC_LIB:}${LD_LIBRARY_PATH:-}
LD_LIBRARY_PATH=$NVRTC_PATH cargo test --release --features cuda --lib \
  every_kernel_file_compiles -- --nocapture

step "C and C++: header drift, exported symbols, C tests under sanitizers, C++ GoogleTest, CMake package"
scripts/test-native.sh

step "Bindings: generated Go/Java code and option/status lists match include/gradtau.h"
scripts/check-bindings.sh

step "Go: cgo bindings (go vet, go test -race, GC-forcing run)"
scripts/test-go.sh

step "Java: JNI glue + JUnit 5 (Maven Surefire)"
scripts/test-java.sh

step "Serving: C++, Go and Java example services predicting while the model unlearns (load driver)"
scripts/test-serving.sh

step "Packaging: install to a fresh prefix; C (pkg-config), C++ (CMake), Go and Maven projects outside the repository"
scripts/test-packaging.sh

step "Fuzzing: each cargo-fuzz target briefly (the long runs are logged in docs/FUZZING.md)"
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
else
  echo "!!!! SKIPPED: fuzzing needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz) !!!!"
fi

step "MIA logistic regression vs scikit-learn"
if python3 -c 'import sklearn, numpy' 2>/dev/null; then
  python3 scripts/check_mia_sklearn.py
else
  echo "SKIPPED: scikit-learn/numpy not installed (pip install scikit-learn numpy)"
fi

# Every step above stops the script on failure (set -e), so reaching here means all passed.
printf '\nsuites: %d passed, 0 failed\n' "$suites"
