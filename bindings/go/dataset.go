package gradtau

/*
#include <stdlib.h>
#include "gradtau.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Dataset is an immutable data set: inputs [N, ...] and class labels or float targets.
// gradtau copies the Go slices once at construction, so they may be reused afterwards.
// A Dataset may be used by any number of goroutines at once (e.g. one retain set shared by
// two models).
type Dataset struct {
	// mu is held for reading by every call that hands ptr to C and for writing by Close, so
	// Close can never free the set under a running call.
	mu  sync.RWMutex
	ptr *C.gradtau_dataset
}

func newDataset(ptr *C.gradtau_dataset) *Dataset {
	d := &Dataset{ptr: ptr}
	runtime.SetFinalizer(d, (*Dataset).Close)
	return d
}

// NewClassDataset builds a classification set: inputs holds the row-major values of shape
// (shape[0] = number of samples), labels one non-negative class per sample.
func NewClassDataset(inputs []float32, shape []int, labels []int32) (*Dataset, error) {
	const op = "dataset_classes_new"
	cshape, err := sizes(op, "shape", shape)
	if err != nil {
		return nil, err
	}
	var ptr *C.gradtau_dataset
	err = call(op, func() C.gradtau_status {
		// Go memory passed for the duration of the call only (gradtau copies it), which
		// cgo's pointer rules allow: the slices hold no Go pointers.
		return C.gradtau_dataset_classes_new(floatPtr(inputs), C.size_t(len(inputs)),
			sizePtr(cshape), C.size_t(len(cshape)), int32Ptr(labels), C.size_t(len(labels)), &ptr)
	})
	runtime.KeepAlive(inputs)
	runtime.KeepAlive(cshape)
	runtime.KeepAlive(labels)
	if err != nil {
		return nil, err
	}
	return newDataset(ptr), nil
}

// NewValueDataset builds a set with float targets (for mse and bce_with_logits models);
// targetShape[0] must equal shape[0].
func NewValueDataset(inputs []float32, shape []int, targets []float32, targetShape []int) (*Dataset, error) {
	const op = "dataset_values_new"
	cshape, err := sizes(op, "shape", shape)
	if err != nil {
		return nil, err
	}
	ctshape, err := sizes(op, "target shape", targetShape)
	if err != nil {
		return nil, err
	}
	var ptr *C.gradtau_dataset
	err = call(op, func() C.gradtau_status {
		return C.gradtau_dataset_values_new(floatPtr(inputs), C.size_t(len(inputs)),
			sizePtr(cshape), C.size_t(len(cshape)), floatPtr(targets), C.size_t(len(targets)),
			sizePtr(ctshape), C.size_t(len(ctshape)), &ptr)
	})
	runtime.KeepAlive(inputs)
	runtime.KeepAlive(cshape)
	runtime.KeepAlive(targets)
	runtime.KeepAlive(ctshape)
	if err != nil {
		return nil, err
	}
	return newDataset(ptr), nil
}

// DigitsSplit returns the embedded UCI digits data (1797 8x8 images in [0, 1], labels 0-9)
// split with seed into train (70 %), validation (10 %) and test (20 %) sets. Demo and test
// convenience; pairs with DigitsMLPSpec.
func DigitsSplit(seed uint64) (train, val, test *Dataset, err error) {
	var tr, va, te *C.gradtau_dataset
	err = call("digits_split", func() C.gradtau_status {
		return C.gradtau_digits_split(C.uint64_t(seed), &tr, &va, &te)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return newDataset(tr), newDataset(va), newDataset(te), nil
}

// LoadDataset reads a data set for m from files: inputs from inputsPath (.npy float32 or
// float64 [N, InputShape()...], or an IDX image file, plain or gzip, scaled to [0, 1]) and
// targets from targetsPath (class labels as .npy integers or an IDX label file for a
// cross_entropy model; float .npy [N, OutputShape()...] otherwise). A file that cannot be
// read or parsed is a StatusIO error naming it; samples that do not fit the model, or counts
// that differ, StatusShape. A read of the model: allowed during a run on it.
func LoadDataset(m *Model, inputsPath, targetsPath string) (*Dataset, error) {
	const op = "dataset_load"
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	cx := C.CString(inputsPath)
	defer C.free(unsafe.Pointer(cx))
	cy := C.CString(targetsPath)
	defer C.free(unsafe.Pointer(cy))
	var out *C.gradtau_dataset
	err = call(op, func() C.gradtau_status { return C.gradtau_dataset_load(ptr, cx, cy, &out) })
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return newDataset(out), nil
}

// acquire pins the set open for one C call; release with d.mu.RUnlock.
func (d *Dataset) acquire(op string) (*C.gradtau_dataset, error) {
	if d == nil {
		return nil, &Error{Status: StatusNullPointer, Op: op, Message: "nil *Dataset"}
	}
	d.mu.RLock()
	if d.ptr == nil {
		d.mu.RUnlock()
		return nil, ErrClosed
	}
	return d.ptr, nil
}

// Len is the number of samples (0 after Close).
func (d *Dataset) Len() int {
	ptr, err := d.acquire("dataset_len")
	if err != nil {
		return 0
	}
	n := int(C.gradtau_dataset_len(ptr))
	d.mu.RUnlock()
	runtime.KeepAlive(d)
	afterCall()
	return n
}

// Labels copies the class label of every sample.
func (d *Dataset) Labels() ([]int32, error) {
	const op = "dataset_labels"
	ptr, err := d.acquire(op)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	n := int(C.gradtau_dataset_len(ptr))
	labels := make([]int32, n)
	err = call(op, func() C.gradtau_status {
		return C.gradtau_dataset_labels(ptr, outInt32Ptr(labels), C.size_t(n))
	})
	runtime.KeepAlive(labels)
	runtime.KeepAlive(d)
	if err != nil {
		return nil, err
	}
	return labels, nil
}

// Inputs copies the inputs of every sample, row-major [Len(), sample shape...]: the
// samples of a set (the embedded digits, say) reused as unlabelled requests for Infer.
func (d *Dataset) Inputs() ([]float32, error) {
	const op = "dataset_inputs"
	ptr, err := d.acquire(op)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	sample, err := sampleShape(op, ptr)
	if err != nil {
		return nil, err
	}
	n, err := product(op, "the inputs of the set", int(C.gradtau_dataset_len(ptr)), sample)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	err = call(op, func() C.gradtau_status {
		return C.gradtau_dataset_inputs(ptr, outFloatPtr(out), C.size_t(len(out)))
	})
	runtime.KeepAlive(out)
	runtime.KeepAlive(d)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SampleShape is the shape of one sample's inputs, without the sample dimension: [64] for
// the digits, [1, 28, 28] for MNIST images.
func (d *Dataset) SampleShape() ([]int, error) {
	const op = "dataset_sample_shape"
	ptr, err := d.acquire(op)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	out, err := sampleShape(op, ptr)
	runtime.KeepAlive(d)
	return out, err
}

// sampleShape copies the set's sample shape; the caller holds the set's read lock, which
// keeps the array (owned by the set) alive while it is copied.
func sampleShape(op string, ptr *C.gradtau_dataset) ([]int, error) {
	var s *C.size_t
	var rank C.size_t
	if err := call(op, func() C.gradtau_status { return C.gradtau_dataset_sample_shape(ptr, &s, &rank) }); err != nil {
		return nil, err
	}
	return goSizes(s, rank), nil
}

// Subset returns a new set with the samples at indices (copied, in that order; repeats
// allowed).
func (d *Dataset) Subset(indices []int) (*Dataset, error) {
	const op = "dataset_subset"
	cidx, err := sizes(op, "indices", indices)
	if err != nil {
		return nil, err
	}
	ptr, err := d.acquire(op)
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	var out *C.gradtau_dataset
	err = call(op, func() C.gradtau_status {
		return C.gradtau_dataset_subset(ptr, sizePtr(cidx), C.size_t(len(cidx)), &out)
	})
	runtime.KeepAlive(cidx)
	runtime.KeepAlive(d)
	if err != nil {
		return nil, err
	}
	return newDataset(out), nil
}

// Close frees the set. It returns a StatusBusy error, and frees nothing, while another
// goroutine is using the set in a call; a second Close is a no-op.
func (d *Dataset) Close() error {
	if d == nil {
		return nil
	}
	if !d.mu.TryLock() {
		return busy("dataset_free", "the data set is in use by a running call")
	}
	defer d.mu.Unlock()
	if d.ptr != nil {
		C.gradtau_dataset_free(d.ptr)
		d.ptr = nil
		runtime.SetFinalizer(d, nil)
		afterCall()
	}
	return nil
}

// sizes converts Go ints to size_t, refusing negative values before they wrap around.
func sizes(op, what string, v []int) ([]C.size_t, error) {
	out := make([]C.size_t, len(v))
	for i, x := range v {
		if x < 0 {
			return nil, invalid(op, "%s[%d] is negative (%d)", what, i, x)
		}
		out[i] = C.size_t(x)
	}
	return out, nil
}

// outFloatPtr and outInt32Ptr give the address of a result slice that gradtau writes. An
// empty result (an empty data set) still gets a non-NULL address, one scratch element that
// nothing reads, because gradtau's output parameters refuse NULL even with length 0.
func outFloatPtr(s []float32) *C.float {
	if len(s) == 0 {
		return new(C.float)
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func outInt32Ptr(s []int32) *C.int32_t {
	if len(s) == 0 {
		return new(C.int32_t)
	}
	return (*C.int32_t)(unsafe.Pointer(&s[0]))
}

// The input pointer helpers map an empty slice to NULL, which the ABI reads as an empty
// buffer.
func floatPtr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func int32Ptr(s []int32) *C.int32_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&s[0]))
}

func sizePtr(s []C.size_t) *C.size_t {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}
