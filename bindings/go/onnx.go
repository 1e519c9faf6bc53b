package gradtau

/*
#include <stdlib.h>
#include "gradtau.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// NewModelFromONNX compiles a model from the bytes of an ONNX file (opset 13 and newer; the
// supported operators are listed in the project README). Its parameters are the graph's
// initializers under their ONNX names (for a PyTorch export, the state_dict names): bind
// buffers to them as usual (NewWeights, Bind), then fill them with LoadONNXWeights or with
// the host's own values. loss is the loss the model was trained with, "cross_entropy",
// "mse" or "bce_with_logits" (ONNX does not record it). gradtau copies the bytes, so onnx
// may be reused when the call returns.
//
// Bytes that are not an ONNX model, or a graph gradtau cannot run, give a StatusSpec error
// naming the node, its op type and the reason; an unknown loss StatusInvalidArgument.
func NewModelFromONNX(onnx []byte, loss string) (*Model, error) {
	const op = "model_from_onnx"
	if err := checkABI(); err != nil {
		return nil, err
	}
	closs := C.CString(loss)
	defer C.free(unsafe.Pointer(closs))
	var ptr *C.gradtau_model
	err := call(op, func() C.gradtau_status {
		// Go memory read only during the call (gradtau copies it) and holding no Go
		// pointers: allowed by cgo. An empty slice goes as NULL with length 0, which
		// gradtau refuses as not an ONNX model.
		return C.gradtau_model_from_onnx(bytePtr(onnx), C.size_t(len(onnx)), closs, &ptr)
	})
	runtime.KeepAlive(onnx)
	if err != nil {
		return nil, err
	}
	m := &Model{ptr: ptr, bound: map[string]*Buffer{}}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// LoadONNXWeights writes the initializer values of the ONNX file the model was made from
// into its bound buffers (every parameter must be bound), published like the result of a
// run (through the publish hook, if one is set). A model not made from an ONNX file is a
// StatusInvalidArgument error; an unbound parameter StatusBinding. A writing call.
func (m *Model) LoadONNXWeights() error {
	const op = "model_load_onnx_weights"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return err
	}
	defer done()
	err = call(op, func() C.gradtau_status { return C.gradtau_model_load_onnx_weights(ptr) })
	runtime.KeepAlive(m)
	return err
}

// ToONNX is the ONNX file the model was made from with its initializers replaced by the
// current weights of the bound buffers: same graph, names, opset and metadata. The bytes
// are copied into Go memory. A model not made from an ONNX file is a StatusInvalidArgument
// error; an unbound parameter StatusBinding; NaN weights StatusNonFinite. A read: allowed
// during a run (it sees the weights from before it).
func (m *Model) ToONNX() ([]byte, error) {
	const op = "model_to_onnx"
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	var data *C.uint8_t
	var n C.size_t
	err = call(op, func() C.gradtau_status { return C.gradtau_model_to_onnx(ptr, &data, &n) })
	runtime.KeepAlive(m)
	if err != nil {
		return nil, err
	}
	// Copied out (C.GoBytes would cap the length at an int32) before gradtau frees its own.
	out := make([]byte, int(n))
	copy(out, unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)))
	C.gradtau_bytes_free(data, n)
	afterCall()
	return out, nil
}

func bytePtr(s []byte) *C.uint8_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&s[0]))
}
