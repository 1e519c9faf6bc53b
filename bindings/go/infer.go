package gradtau

/*
#include "gradtau.h"
*/
import "C"

import (
	"math"
	"runtime"
)

// Infer runs the model with its bound weights on count unlabelled samples: inputs holds
// them row-major, [count, InputShape()...], exactly count * prod(InputShape()) floats. It
// returns [count, OutputShape()...] row-major, raw or as probabilities as kind says.
// Normalisation layers run in evaluation mode. An empty batch (count 0, inputs nil) is
// valid and returns an empty slice. A read: any number may run at once, also during a run
// on the model (they see the weights from before it until it publishes).
func (m *Model) Infer(inputs []float32, count int, kind Output) ([]float32, error) {
	const op = "model_infer"
	if count < 0 {
		return nil, invalid(op, "count is negative (%d)", count)
	}
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	n, err := outputLen(op, ptr, count)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	err = call(op, func() C.gradtau_status {
		// Go memory read (inputs) and written (out) during the call only, holding no Go
		// pointers: allowed by cgo. Empty slices go as NULL, an empty buffer.
		return C.gradtau_model_infer(ptr, floatPtr(inputs), C.size_t(len(inputs)),
			C.size_t(count), C.gradtau_output(kind), floatPtr(out), C.size_t(len(out)))
	})
	runtime.KeepAlive(inputs)
	runtime.KeepAlive(out)
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Classify is the predicted class (argmax of the outputs) of each of count unlabelled
// samples, for a cross_entropy model (StatusInvalidArgument otherwise). Inputs, empty
// batches and concurrency as in Infer.
func (m *Model) Classify(inputs []float32, count int) ([]int32, error) {
	const op = "model_classify"
	if count < 0 {
		return nil, invalid(op, "count is negative (%d)", count)
	}
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := make([]int32, count)
	err = call(op, func() C.gradtau_status {
		return C.gradtau_model_classify(ptr, floatPtr(inputs), C.size_t(len(inputs)),
			C.size_t(count), int32Ptr(out), C.size_t(len(out)))
	})
	runtime.KeepAlive(inputs)
	runtime.KeepAlive(out)
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Predict runs the model with its bound weights on every sample of data and returns the
// outputs (logits for a classifier), row-major [data.Len(), OutputShape()...]; the targets
// of data are not used (Infer needs none). Normalisation layers run in evaluation mode.
// Samples that do not fit the model are a StatusShape error; NaN data or weights
// StatusNonFinite. A read, like Infer.
func (m *Model) Predict(data *Dataset) ([]float32, error) {
	return m.infer("predict", data, true, func(ptr *C.gradtau_model, d *C.gradtau_dataset, out *C.float, n C.size_t) C.gradtau_status {
		return C.gradtau_predict(ptr, d, out, n)
	})
}

// Losses is the per-sample training loss (the spec's cross-entropy, MSE or
// BCE-with-logits) of every sample of data under the bound weights, in evaluation mode. A
// read, like Infer.
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
		if total, err = outputLen(op, ptr, total); err != nil {
			return nil, err
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

// outputLen is count * prod(output shape), refused with StatusShape where it would not fit
// in an int. The caller holds the model's read lock (the shape array belongs to the model).
func outputLen(op string, ptr *C.gradtau_model, count int) (int, error) {
	var s *C.size_t
	var rank C.size_t
	if err := call(op, func() C.gradtau_status { return C.gradtau_model_output_shape(ptr, &s, &rank) }); err != nil {
		return 0, err
	}
	return product(op, "the output", count, goSizes(s, rank))
}

// product is n * prod(dims), refused with StatusShape where it would overflow an int.
func product(op, what string, n int, dims []int) (int, error) {
	for _, d := range dims {
		if d != 0 && n > math.MaxInt/d {
			return 0, &Error{Status: StatusShape, Op: op,
				Message: what + " does not fit in a Go slice"}
		}
		n *= d
	}
	return n, nil
}
