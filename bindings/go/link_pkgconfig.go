//go:build !gradtau_devtree

package gradtau

// Linking against an installed gradtau (the default): the flags come from gradtau.pc, so
// PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig is all a user sets. gradtau.pc carries an rpath to
// its lib/ folder, so the program finds libgradtau.so.<abi> at run time without
// LD_LIBRARY_PATH. Inside a checkout, -tags gradtau_devtree links the cargo build instead
// (link_devtree.go).

/*
#cgo pkg-config: gradtau
*/
import "C"
