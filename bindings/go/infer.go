package gradtau

/*
#include "gradtau.h"
*/
import "C"

import (
	"math"
	"runtime"
)

// Predict runs the model with its bound weights on every sample of data and returns the
// outputs (logits for a classifier), row-major [data.Len(), OutputShape()...].
// Normalisation layers run in evaluation mode and the buffers are only read. Samples that
// do not fit the model are a StatusShape error; NaN data or weights StatusNonFinite.
func (m *Model) Predict(data *Dataset) ([]float32, error) {
	return m.infer("predict", data, true, func(ptr *C.gradtau_model, d *C.gradtau_dataset, out *C.float, n C.size_t) C.gradtau_status {
		return C.gradtau_predict(ptr, d, out, n)
	})
}

// Losses is the per-sample training loss (the spec's cross-entropy, MSE or
// BCE-with-logits) of every sample of data under the bound weights, in evaluation mode;
// the buffers are only read.
func (m *Model) Losses(data *Dataset) ([]float32, error) {
	return m.infer("losses", data, false, func(ptr *C.gradtau_model, d *C.gradtau_dataset, out *C.float, n C.size_t) C.gradtau_status {
		return C.gradtau_losses(ptr, d, out, n)
	})
}

// infer sizes the result exactly as the ABI demands (N, times prod(output_shape) when
// perOutput) and lets gradtau write it straight into a Go slice: allowed by cgo because the
// slice holds no Go pointers and gradtau does not keep it past the call.
func (m *Model) infer(op string, data *Dataset, perOutput bool,
	f func(*C.gradtau_model, *C.gradtau_dataset, *C.float, C.size_t) C.gradtau_status) ([]float32, error) {
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	sets, release, err := acquireSets(op, []string{"data"}, []*Dataset{data})
	if err != nil {
		return nil, err
	}
	defer release()
	total := int(C.gradtau_dataset_len(sets[0]))
	if perOutput {
		var s *C.size_t
		var rank C.size_t
		if err := call(op, func() C.gradtau_status { return C.gradtau_model_output_shape(ptr, &s, &rank) }); err != nil {
			return nil, err
		}
		// Read under the model's read lock: the array belongs to the model.
		for _, d := range goSizes(s, rank) {
			if d != 0 && total > math.MaxInt/d {
				return nil, &Error{Status: StatusShape, Op: op,
					Message: "the output of the whole data set does not fit in a Go slice"}
			}
			total *= d
		}
	}
	out := make([]float32, total)
	err = call(op, func() C.gradtau_status {
		return f(ptr, sets[0], outFloatPtr(out), C.size_t(len(out)))
	})
	runtime.KeepAlive(out)
	runtime.KeepAlive(m)
	runtime.KeepAlive(data)
	if err != nil {
		return nil, err
	}
	return out, nil
}
