package gradtau

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"
)

// These tests fail when the Go binding and the library (or include/gradtau.h, which cgo
// compiles) disagree: a status, an enum value or an options field one side has and the other
// lacks, or a default the binding does not take from the library. The fix is always to
// regenerate: python3 scripts/gen_bindings.py.

const regenerate = "(regenerate the bindings: python3 scripts/gen_bindings.py)"

// TestStatusesMatchTheLibrary asks the library for the name of every number and compares the
// set with the generated constants, both ways.
func TestStatusesMatchTheLibrary(t *testing.T) {
	ours := map[Status]bool{}
	for _, s := range knownStatuses {
		ours[s] = true
	}
	for code := Status(-8); code < 1024; code++ {
		name := code.String()
		known := name != "GRADTAU_UNKNOWN_STATUS"
		if known && !ours[code] {
			t.Errorf("the library defines %s = %d, the Go binding has no constant for it %s", name, code, regenerate)
		}
		if !known && ours[code] {
			t.Errorf("the Go binding has status %d, which the library does not define %s", code, regenerate)
		}
	}
}

// checkEnum asks the library about every value of one enum and about the number after the
// last: the values must be accepted and that number refused (the library accepting it means
// a value the binding lacks).
func checkEnum[E ~int32](t *testing.T, what string, all []E, try func(E) error) {
	t.Helper()
	last := E(-1)
	for _, v := range all {
		if err := try(v); err != nil {
			t.Errorf("%s %d: %v %s", what, v, err, regenerate)
		}
		last = max(last, v)
	}
	if err := try(last + 1); !errors.Is(err, StatusInvalidArgument) {
		t.Errorf("the library accepts %s %d, which the Go binding lacks (%v) %s", what, last+1, err, regenerate)
	}
}

// TestEnumsMatchTheLibrary: methods through their defaults, optimizers and ∇τ modes through
// one short run each.
func TestEnumsMatchTheLibrary(t *testing.T) {
	checkEnum(t, "method", allMethods, func(m Method) error {
		_, err := DefaultUnlearnOptions(m)
		return err
	})
	d := newDigits(t, 3)
	m, _ := newDigitsModel(t, 1)
	topts, err := DefaultTrainOptions()
	if err != nil {
		t.Fatal(err)
	}
	topts.Epochs, topts.Device = 1, "cpu"
	checkEnum(t, "optimizer", allOptimizers, func(o Optimizer) error {
		opts := topts
		opts.Optimizer = o
		_, err := m.Train(nil, d.forget, &opts)
		return err
	})
	uopts, err := DefaultUnlearnOptions(MethodNablaTau)
	if err != nil {
		t.Fatal(err)
	}
	uopts.MaxSteps, uopts.Device = 1, "cpu"
	checkEnum(t, "∇τ mode", allNablaTauModes, func(mode NablaTauMode) error {
		opts := uopts
		opts.Mode = mode
		_, err := m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
		return err
	})
}

// goFieldsByTag maps the `c` tag of every field of a Go options struct to the field.
func goFieldsByTag(typ reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < typ.NumField(); i++ {
		if tag, ok := typ.Field(i).Tag.Lookup("c"); ok {
			out[tag] = typ.Field(i)
		}
	}
	return out
}

// distinct returns a value for a Go field unlike the one it holds, of its type.
func distinct(f reflect.Value) reflect.Value {
	v := reflect.New(f.Type()).Elem()
	switch f.Kind() {
	case reflect.Int, reflect.Int32:
		v.SetInt(f.Int() + 3)
	case reflect.Uint64:
		v.SetUint(f.Uint() + 1<<40)
	case reflect.Float32:
		x := f.Float()
		if math.IsNaN(x) {
			x = 0
		}
		v.SetFloat(x + 0.375)
	case reflect.Bool:
		v.SetBool(!f.Bool())
	case reflect.String:
		v.SetString(f.String() + "drift")
	default:
		panic(fmt.Sprintf("the drift test does not know how to vary a %s", f.Kind()))
	}
	return v
}

// asC is the decoded C value (see cFields) that a Go value must become.
func asC(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Int:
		return uint64(v.Int()) // size_t
	case reflect.Int32:
		return v.Int()
	case reflect.Uint64:
		return v.Uint()
	case reflect.Float32:
		return cFloat(math.Float64bits(v.Float()))
	case reflect.Bool:
		return v.Bool()
	case reflect.String:
		return v.String()
	}
	panic(v.Kind().String())
}

// checkOptions is the options check shared by both structs. toC gives the C struct the
// library's _default fills (def) and the one the binding builds from a Go value (got).
func checkOptions(t *testing.T, name, cName string, defaults reflect.Value,
	toC func(o reflect.Value) (def, got map[string]any, err error)) {
	t.Helper()
	fields := goFieldsByTag(defaults.Type())
	def, got, err := toC(defaults)
	if err != nil {
		t.Fatal(err)
	}
	var cNames []string
	for n := range def {
		cNames = append(cNames, n)
	}
	sort.Strings(cNames)
	// Every C field has a Go field, and the Go defaults reproduce the library's struct.
	for _, n := range cNames {
		if n == "struct_size" {
			continue
		}
		if _, ok := fields[n]; !ok {
			t.Errorf("%s.%s (in include/gradtau.h) has no field in the Go %s %s", cName, n, name, regenerate)
			continue
		}
		if !reflect.DeepEqual(def[n], got[n]) {
			t.Errorf("%s.%s: the library's default is %v, the Go default passes %v", cName, n, def[n], got[n])
		}
	}
	for tag := range fields {
		if _, ok := def[tag]; !ok {
			t.Errorf("the Go %s has field %s for C field %q, which the header lacks %s", name, fields[tag].Name, tag, regenerate)
		}
	}
	// Every Go field reaches its C field: change one at a time and look at the C struct.
	for _, n := range cNames {
		f, ok := fields[n]
		if !ok {
			continue
		}
		o := reflect.New(defaults.Type()).Elem()
		o.Set(defaults)
		want := distinct(o.FieldByIndex(f.Index))
		o.FieldByIndex(f.Index).Set(want)
		_, got, err := toC(o)
		if err != nil {
			t.Errorf("%s.%s = %v: %v", name, f.Name, want, err)
			continue
		}
		if !reflect.DeepEqual(got[n], asC(want)) {
			t.Errorf("%s.%s = %v reaches C field %s as %v", name, f.Name, want, n, got[n])
		}
	}
}

func TestUnlearnOptionsMatchTheHeaderAndDefaults(t *testing.T) {
	for _, m := range allMethods {
		defaults, err := DefaultUnlearnOptions(m)
		if err != nil {
			t.Fatal(err)
		}
		if defaults.Method != m {
			t.Fatalf("defaults of method %d say method %d", m, defaults.Method)
		}
		checkOptions(t, "UnlearnOptions", "gradtau_unlearn_options", reflect.ValueOf(defaults), func(o reflect.Value) (map[string]any, map[string]any, error) {
			opts := o.Interface().(UnlearnOptions)
			return cUnlearnOptions(m, &opts)
		})
	}
}

func TestTrainOptionsMatchTheHeaderAndDefaults(t *testing.T) {
	defaults, err := DefaultTrainOptions()
	if err != nil {
		t.Fatal(err)
	}
	checkOptions(t, "TrainOptions", "gradtau_train_options", reflect.ValueOf(defaults), func(o reflect.Value) (map[string]any, map[string]any, error) {
		opts := o.Interface().(TrainOptions)
		return cTrainOptions(&opts)
	})
}
