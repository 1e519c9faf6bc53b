// Package gradtau binds gradtau, machine unlearning with the ∇τ method, through its C ABI
// (include/gradtau.h).
//
// Handles (Model, Dataset, Buffer, Weights) own C memory. Close releases it and may be
// called any number of times; a finalizer calls Close as a backstop only, so close handles
// explicitly. Using a handle after Close returns ErrClosed instead of crashing.
//
// Memory ownership: gradtau keeps the pointer of every bound weight buffer across calls,
// which cgo forbids for Go-allocated memory. Weights therefore live in C memory (Buffer,
// allocated with malloc) and are exposed to Go as a []float32 that aliases it: zero copies,
// and the Go garbage collector never moves or frees what gradtau points at. Data sets and
// options are only read during a call (gradtau copies data sets), so they come straight
// from Go slices.
//
// Errors are *Error values carrying the Status and the library's message; compare with
// errors.Is(err, gradtau.StatusBusy) and friends.
//
// The statuses, the enum constants (Method, NablaTauMode, Optimizer, StopReason, ...) and the
// options structs are generated from include/gradtau.h (the *_gen.go files), and every
// option default comes from the library's own *_options_default at run time.
package gradtau

//go:generate python3 ../../scripts/gen_bindings.py

/*
#include <stdlib.h>
#include "gradtau.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

// HeaderABIVersion is the GRADTAU_ABI_VERSION of the header these bindings were compiled
// against; ABIVersion must return the same number.
const HeaderABIVersion = uint32(C.GRADTAU_ABI_VERSION)

// Version is the library version, e.g. "0.1.0".
func Version() string {
	v := C.GoString(C.gradtau_version())
	afterCall()
	return v
}

// ABIVersion is the ABI version of the loaded library.
func ABIVersion() uint32 {
	v := uint32(C.gradtau_abi_version())
	afterCall()
	return v
}

var abiOnce struct {
	sync.Once
	err error
}

// checkABI refuses a libgradtau.so from another ABI generation: the options structs and
// enum numbers this package passes would be misread.
func checkABI() error {
	abiOnce.Do(func() {
		if got := ABIVersion(); got != HeaderABIVersion {
			abiOnce.err = &Error{
				Status: StatusABIMismatch,
				Op:     "abi_version",
				Message: fmt.Sprintf("the loaded libgradtau has ABI version %d, these bindings were built for %d",
					got, HeaderABIVersion),
			}
		}
	})
	return abiOnce.err
}

// call runs one fallible C call and turns its status into an error. The OS thread is locked
// across the call and the message read because gradtau_last_error_message is thread-local:
// without the lock the goroutine could move to another thread in between and read that
// thread's message.
func call(op string, f func() C.gradtau_status) error {
	runtime.LockOSThread()
	status := f()
	var err error
	if status != C.GRADTAU_OK {
		err = &Error{
			Status:  Status(status),
			Op:      op,
			Message: C.GoString(C.gradtau_last_error_message()),
		}
	}
	runtime.UnlockOSThread()
	afterCall()
	return err
}

// afterCall runs after every C call; with the gradtau_gcdebug build tag it forces a
// collection so that a missing KeepAlive or a finalizer racing a call shows up in tests.
func afterCall() {
	if debugForceGC {
		runtime.GC()
	}
}
