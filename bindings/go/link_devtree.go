//go:build gradtau_devtree

package gradtau

// Development build inside a gradtau checkout (scripts/test-go.sh): the header from the
// repository's include/ and the library that `cargo build --release --lib` leaves in
// target/release, with an rpath so test binaries find it. When CARGO_TARGET_DIR points
// elsewhere, add that directory through the environment (it is searched as well):
//
//	CGO_LDFLAGS="-L$CARGO_TARGET_DIR/release -Wl,-rpath,$CARGO_TARGET_DIR/release"

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lgradtau
*/
import "C"
