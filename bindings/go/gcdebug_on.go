//go:build gradtau_gcdebug

package gradtau

// debugForceGC makes afterCall run runtime.GC() after every C call (and the progress
// trampoline after every callback): a lifetime bug then fails fast instead of once a month.
const debugForceGC = true
