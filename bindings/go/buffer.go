package gradtau

/*
#include <stdlib.h>
#include <string.h>
#include "gradtau.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Buffer is a float32 array in C memory that a Model can bind as a parameter.
//
// Why C memory: gradtau_model_bind keeps the pointer until the model is freed or rebound,
// and reads and writes the buffer during later calls. cgo forbids C from keeping a pointer
// to Go memory after a call returns (the collector may free it, and may one day move it),
// so a []float32 from make() cannot be bound. A Buffer's memory comes from malloc and is
// exposed through Float32s as a slice that aliases it: the host reads and writes the
// weights in place, with no copies in either direction.
//
// Lifetime: every Model that binds the Buffer holds a reference; the memory is freed when
// the Buffer has been closed (or collected) and no open Model binds it any more. Close
// therefore never leaves gradtau with a dangling pointer.
type Buffer struct {
	mu     sync.Mutex
	ptr    *C.float
	n      int
	refs   int  // bindings held by open models
	closed bool // Close was called: free as soon as refs reaches 0
}

// NewBuffer allocates n zeroed floats in C memory.
func NewBuffer(n int) (*Buffer, error) {
	if n < 0 {
		return nil, invalid("buffer_new", "length %d is negative", n)
	}
	b := &Buffer{n: n}
	if n > 0 {
		if uint64(n) > uint64(^C.size_t(0))/4 {
			return nil, invalid("buffer_new", "length %d overflows size_t", n)
		}
		b.ptr = (*C.float)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.float(0)))))
		if b.ptr == nil {
			return nil, invalid("buffer_new", "cannot allocate %d floats", n)
		}
	}
	runtime.SetFinalizer(b, (*Buffer).Close)
	return b, nil
}

// Len is the number of floats.
func (b *Buffer) Len() int { return b.n }

// Float32s is the buffer's memory as a slice, or nil after Close. The slice aliases C
// memory: it must not be used after Close. It must not be written while any call on a
// model binding it is in flight (reads copy it), and must not be read while a Train,
// Unlearn or InitWeights on such a model may publish, unless the reader holds a lock that
// the model's publish hook takes (see Model.SetPublishHook). The race detector cannot see
// gradtau's side of such a race.
func (b *Buffer) Float32s() []float32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ptr == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(b.ptr)), b.n)
}

// CopyFrom copies src into the buffer; len(src) must equal Len.
func (b *Buffer) CopyFrom(src []float32) error {
	dst := b.Float32s()
	if dst == nil && b.n > 0 {
		return ErrClosed
	}
	if len(src) != b.n {
		return &Error{Status: StatusShape, Op: "buffer_copy",
			Message: fmt.Sprintf("the buffer holds %d floats, the source %d", b.n, len(src))}
	}
	copy(dst, src)
	runtime.KeepAlive(b)
	return nil
}

// Close releases the host's hold on the buffer. The memory is freed now if no open model
// binds it, else when the last such model is closed. A second Close is a no-op.
func (b *Buffer) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	runtime.SetFinalizer(b, nil)
	b.freeIfUnused()
	return nil
}

// acquire takes a binding reference; the pointer stays valid until the matching release.
func (b *Buffer) acquire() (*C.float, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	b.refs++
	return b.ptr, nil
}

func (b *Buffer) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs--
	b.freeIfUnused()
}

func (b *Buffer) freeIfUnused() {
	if b.closed && b.refs == 0 && b.ptr != nil {
		C.free(unsafe.Pointer(b.ptr))
		b.ptr = nil
	}
}

// Weights is one Buffer per parameter of a model, all bound to it: the host's state_dict,
// in C memory. Made by Model.NewWeights.
type Weights struct {
	names []string
	bufs  []*Buffer
	index map[string]int
}

// Names lists the parameters in spec order.
func (w *Weights) Names() []string { return append([]string(nil), w.names...) }

// Buffer is the buffer of the parameter name, or nil if there is none.
func (w *Weights) Buffer(name string) *Buffer {
	if i, ok := w.index[name]; ok {
		return w.bufs[i]
	}
	return nil
}

// Get is the parameter's values in place (Buffer.Float32s), or nil for an unknown name or
// after Close.
func (w *Weights) Get(name string) []float32 {
	if b := w.Buffer(name); b != nil {
		return b.Float32s()
	}
	return nil
}

// Snapshot copies every parameter into Go memory.
func (w *Weights) Snapshot() map[string][]float32 {
	out := make(map[string][]float32, len(w.names))
	for i, name := range w.names {
		out[name] = append([]float32(nil), w.bufs[i].Float32s()...)
	}
	return out
}

// Load copies the given parameters into the buffers (e.g. a state_dict the host loaded);
// every name must exist and every length match. Nothing is written unless all fit.
func (w *Weights) Load(values map[string][]float32) error {
	for name, v := range values {
		b := w.Buffer(name)
		if b == nil {
			return &Error{Status: StatusBinding, Op: "weights_load",
				Message: fmt.Sprintf("`%s` is not a parameter of the model", name)}
		}
		if len(v) != b.Len() {
			return &Error{Status: StatusBinding, Op: "weights_load",
				Message: fmt.Sprintf("`%s` holds %d floats, the value %d", name, b.Len(), len(v))}
		}
	}
	for name, v := range values {
		if err := w.Buffer(name).CopyFrom(v); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every buffer (see Buffer.Close: memory still bound to an open model is
// freed when that model is closed).
func (w *Weights) Close() error {
	for _, b := range w.bufs {
		_ = b.Close()
	}
	return nil
}
