//go:build gradtau_pkgconfig

package gradtau

// Linking against an installed package: with -tags gradtau_pkgconfig the flags come from
// gradtau.pc, so set PKG_CONFIG_PATH=/opt/gradtau/lib/pkgconfig. The Rust library has no
// SONAME; add CGO_LDFLAGS="-Wl,-rpath,/opt/gradtau/lib" (or ship libgradtau.so next to the
// binary) so the program finds it at run time.

/*
#cgo pkg-config: gradtau
*/
import "C"
