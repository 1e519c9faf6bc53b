//go:build !gradtau_gcdebug

package gradtau

const debugForceGC = false
