package gradtau

/*
#include "gradtau.h"
*/
import "C"

import (
	"fmt"
	"math"
	"reflect"
	"unsafe"
)

// The drift tests (drift_test.go) check that every field of the C options structs, as cgo
// compiles them from include/gradtau.h, is reachable from the Go structs and that the Go
// defaults are the library's. Test files cannot use cgo, so these helpers hand them the C
// structs decoded field by field.

// cFields decodes every named field of a C struct value: integers as int64 or uint64, floats
// as their float64 bits (so that NaN compares equal to NaN), bools, and C strings as Go
// strings ("" for NULL). cgo's padding fields ("_") are skipped.
func cFields(v reflect.Value) map[string]any {
	out := make(map[string]any, v.NumField())
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		if name == "_" {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
			out[name] = f.Int()
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint, reflect.Uintptr:
			out[name] = f.Uint()
		case reflect.Float32, reflect.Float64:
			out[name] = cFloat(math.Float64bits(f.Float()))
		case reflect.Bool:
			out[name] = f.Bool()
		case reflect.Pointer:
			// Only C strings are pointers in an options struct; the pointer is C memory that
			// lives until the caller's free function runs.
			out[name] = goString((*C.char)(unsafe.Pointer(f.Pointer())))
		default:
			out[name] = fmt.Sprintf("unsupported kind %s", f.Kind())
		}
	}
	return out
}

// cFloat is a float as its bits, so that NaN equals NaN; it prints as the number.
type cFloat uint64

func (f cFloat) String() string { return fmt.Sprint(math.Float64frombits(uint64(f))) }

// cUnlearnOptions returns gradtau_unlearn_options_default(method) (def) and what the binding
// passes to gradtau_unlearn for o (got), decoded by cFields.
func cUnlearnOptions(method Method, o *UnlearnOptions) (def, got map[string]any, err error) {
	var d C.gradtau_unlearn_options
	if err := call("unlearn_options_default", func() C.gradtau_status {
		return C.gradtau_unlearn_options_default(C.gradtau_method(method), &d)
	}); err != nil {
		return nil, nil, err
	}
	c, free, err := unlearnOptionsToC("drift", o)
	if err != nil {
		return nil, nil, err
	}
	defer free()
	return cFields(reflect.ValueOf(d)), cFields(reflect.ValueOf(*c)), nil
}

// cTrainOptions is cUnlearnOptions for gradtau_train_options.
func cTrainOptions(o *TrainOptions) (def, got map[string]any, err error) {
	var d C.gradtau_train_options
	if err := call("train_options_default", func() C.gradtau_status {
		return C.gradtau_train_options_default(&d)
	}); err != nil {
		return nil, nil, err
	}
	c, free, err := trainOptionsToC("drift", o)
	if err != nil {
		return nil, nil, err
	}
	defer free()
	return cFields(reflect.ValueOf(d)), cFields(reflect.ValueOf(*c)), nil
}
