package gradtau

/*
#include "gradtau.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// Status is a gradtau_status code. The numbers are part of the C ABI and never change; the
// constants (status_gen.go) are generated from include/gradtau.h. Status implements error so that errors.Is(err, StatusBusy) matches any *Error with that
// status.
type Status int32

// String is the C name of the status ("GRADTAU_BUSY"), or "GRADTAU_UNKNOWN_STATUS".
func (s Status) String() string {
	name := C.GoString(C.gradtau_status_name(C.int32_t(s)))
	afterCall()
	return name
}

// Error makes a Status usable as an errors.Is target.
func (s Status) Error() string { return s.String() }

// Error is a failed gradtau call.
type Error struct {
	// Status is the code the C call returned (or the one this package chose for a check it
	// made before calling, such as a negative length).
	Status Status
	// Op names the call, e.g. "model_bind" for gradtau_model_bind.
	Op string
	// Message is gradtau_last_error_message() of the failing call.
	Message string
	// Cause is, for StatusCancelled, the error the progress callback returned or the
	// context's error; nil otherwise.
	Cause error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("gradtau: %s: %s", e.Op, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap exposes the Status and the Cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Status, e.Cause}
	}
	return []error{e.Status}
}

// ErrClosed is returned by every call on a handle after its Close.
var ErrClosed = errors.New("gradtau: use of a closed handle")

func invalid(op, format string, args ...any) error {
	return &Error{Status: StatusInvalidArgument, Op: op, Message: fmt.Sprintf(format, args...)}
}

func busy(op, message string) error {
	return &Error{Status: StatusBusy, Op: op, Message: message}
}
