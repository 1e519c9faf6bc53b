//go:build !gradtau_pkgconfig

package gradtau

// Default linking: the header from this repository's include/ and the library that
// `cargo build --release --lib` leaves in the repository's target/release. The rpath lets
// test binaries find libgradtau.so without LD_LIBRARY_PATH. When CARGO_TARGET_DIR points
// elsewhere, add that directory through the environment (it is searched as well):
//
//	CGO_LDFLAGS="-L$CARGO_TARGET_DIR/release -Wl,-rpath,$CARGO_TARGET_DIR/release"
//
// For an installed prefix (cmake --install ... --prefix /opt/gradtau) build with
// -tags gradtau_pkgconfig instead (see link_pkgconfig.go).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lgradtau
*/
import "C"
