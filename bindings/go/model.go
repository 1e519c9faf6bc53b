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

// Model is an architecture compiled from a JSON spec plus the buffers bound to its
// parameters.
//
// Concurrency: a Model serves while it learns.
//   - Reads (Infer, Classify, Predict, Losses, Audit, LoadDataset and the queries Params,
//     ParamIndex, InputShape, OutputShape, Loss, Threads) may run on any number of
//     goroutines at once, each with its own scratch memory, also while a run is in
//     progress on the same model.
//   - Train and Unlearn compute on a private copy of the weights, so reads during a run see
//     the weights from before it, and publish the result at the end, atomically: a read
//     sees the old model or the new one, never a mix.
//   - Writers (Train, Unlearn, Bind, UnbindAll, InitWeights, SetPublishHook) run one at a
//     time per model: a second one returns a StatusBusy error at once instead of waiting;
//     reads never get StatusBusy.
//   - Neither side starves the other: reads hold the model only while they copy the
//     weights, and a waiting publish holds off new reads for the length of one copy.
//   - A host whose own engine reads the bound buffers publishes safely with SetPublishHook
//     (take its lock at PublishPhaseBegin, release it at PublishPhaseEnd), or by double
//     buffering: bind a second copy of the weights, unlearn into it, then swap its own
//     pointer when the call returns.
//   - SetMemoryLimit bounds the memory of every computing call; like SetThreads it may be
//     called at any time.
//   - SetThreads caps the CPU threads of every call on a model (by default each call may
//     use every core), so a run can be given one core while serving keeps the others.
//   - Close returns a StatusBusy error, and frees nothing, while any other call on the model
//     is in flight.
//
// Different models are independent and may be trained or unlearned in parallel.
type Model struct {
	// mu is held for reading around every C call that uses ptr and for writing by Close,
	// so Close can never free the model under a running call. Close only tries the lock
	// (and reports busy), so a callback that closes its own model cannot deadlock, and no
	// goroutine ever waits for mu's write side, so readers never queue behind it.
	mu  sync.RWMutex
	ptr *C.gradtau_model

	// writeMu is held by the one writing call in flight. gradtau refuses a second writer
	// itself; the Go side takes the same exclusion first because its own state changes
	// with the writer: which Buffers are bound (Bind must record them in the order gradtau
	// applied them) and which publish hook is installed (its handle may only be deleted once
	// no run can call it). A writer only tries it, so a second one gets StatusBusy at once,
	// as from gradtau.
	writeMu sync.Mutex
	// bound holds a reference to every Buffer gradtau has the pointer of, so that memory
	// stays allocated while gradtau may touch it. Guarded by writeMu (or mu's write side).
	bound map[string]*Buffer
	// hook is the installed publish hook (see SetPublishHook). Guarded like bound.
	hook *publishHook
}

// ParamInfo describes one parameter (or buffer, such as a batchnorm running mean).
type ParamInfo struct {
	// Name as in PyTorch's state_dict: "<node>.<param>".
	Name string
	// Shape, row-major.
	Shape []int
	// Numel is the number of floats its buffer must hold.
	Numel int
	// Trainable is false for buffers that are not trained (they must be bound all the same).
	Trainable bool
}

// DigitsMLPSpec is the demo spec for DigitsSplit's data: a 64-128-128-10 ReLU MLP with
// cross-entropy.
func DigitsMLPSpec() string {
	s := C.GoString(C.gradtau_digits_mlp_spec())
	afterCall()
	return s
}

// NewModel compiles a model from its JSON spec (format "gradtau.model/1"). A malformed spec
// gives a StatusSpec error whose message names the node and field at fault.
func NewModel(specJSON string) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var ptr *C.gradtau_model
	err := call("model_new", func() C.gradtau_status {
		// The string's bytes are Go memory read only during the call (gradtau copies what
		// it keeps); an empty string becomes NULL with length 0, an empty buffer.
		return C.gradtau_model_new((*C.char)(unsafe.Pointer(unsafe.StringData(specJSON))),
			C.size_t(len(specJSON)), &ptr)
	})
	runtime.KeepAlive(specJSON)
	if err != nil {
		return nil, err
	}
	m := &Model{ptr: ptr, bound: map[string]*Buffer{}}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// acquire pins the model open for one C call; release with m.mu.RUnlock.
func (m *Model) acquire(op string) (*C.gradtau_model, error) {
	if m == nil {
		return nil, &Error{Status: StatusNullPointer, Op: op, Message: "nil *Model"}
	}
	m.mu.RLock()
	if m.ptr == nil {
		m.mu.RUnlock()
		return nil, ErrClosed
	}
	return m.ptr, nil
}

// acquireWrite pins the model open and takes its writer side for one writing call; the
// returned func releases both, then re-raises a panic of the publish hook (which ran on this
// goroutine, inside the C call, where it could not unwind).
func (m *Model) acquireWrite(op string) (*C.gradtau_model, func(), error) {
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, nil, err
	}
	if !m.writeMu.TryLock() {
		m.mu.RUnlock()
		return nil, nil, busy(op, "another writing call (Train, Unlearn, Bind, UnbindAll, "+
			"InitWeights, SetPublishHook) is running on the model")
	}
	return ptr, func() {
		hookPanic := m.hook.takePanic()
		m.writeMu.Unlock()
		m.mu.RUnlock()
		if hookPanic != nil {
			panic(hookPanic.value)
		}
	}, nil
}

// Params describes every parameter, in spec order.
func (m *Model) Params() ([]ParamInfo, error) {
	const op = "model_param"
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	n := int(C.gradtau_model_param_count(ptr))
	out := make([]ParamInfo, 0, n)
	for i := 0; i < n; i++ {
		var info C.gradtau_param_info
		if err := call(op, func() C.gradtau_status {
			return C.gradtau_model_param(ptr, C.size_t(i), &info)
		}); err != nil {
			return nil, err
		}
		out = append(out, ParamInfo{
			Name:      C.GoString(info.name),
			Shape:     goSizes(info.shape, info.rank),
			Numel:     int(info.numel),
			Trainable: bool(info.trainable),
		})
	}
	runtime.KeepAlive(m)
	return out, nil
}

// ParamIndex is the spec-order index of the parameter name; an unknown name is a
// StatusBinding error.
func (m *Model) ParamIndex(name string) (int, error) {
	const op = "model_param_index"
	ptr, err := m.acquire(op)
	if err != nil {
		return 0, err
	}
	defer m.mu.RUnlock()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var idx C.size_t
	err = call(op, func() C.gradtau_status { return C.gradtau_model_param_index(ptr, cname, &idx) })
	runtime.KeepAlive(m)
	if err != nil {
		return 0, err
	}
	return int(idx), nil
}

// InputShape is the per-sample input shape (without the batch dimension).
func (m *Model) InputShape() ([]int, error) {
	return m.shape("model_input_shape", func(ptr *C.gradtau_model, s **C.size_t, r *C.size_t) C.gradtau_status {
		return C.gradtau_model_input_shape(ptr, s, r)
	})
}

// OutputShape is the per-sample output shape, e.g. [10] for ten classes.
func (m *Model) OutputShape() ([]int, error) {
	return m.shape("model_output_shape", func(ptr *C.gradtau_model, s **C.size_t, r *C.size_t) C.gradtau_status {
		return C.gradtau_model_output_shape(ptr, s, r)
	})
}

func (m *Model) shape(op string, f func(*C.gradtau_model, **C.size_t, *C.size_t) C.gradtau_status) ([]int, error) {
	ptr, err := m.acquire(op)
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	var s *C.size_t
	var rank C.size_t
	if err := call(op, func() C.gradtau_status { return f(ptr, &s, &rank) }); err != nil {
		return nil, err
	}
	// The array belongs to the model, which the read lock keeps alive while it is copied.
	out := goSizes(s, rank)
	runtime.KeepAlive(m)
	return out, nil
}

// Loss is "cross_entropy", "mse" or "bce_with_logits".
func (m *Model) Loss() (string, error) {
	ptr, err := m.acquire("model_loss")
	if err != nil {
		return "", err
	}
	defer m.mu.RUnlock()
	loss := C.GoString(C.gradtau_model_loss(ptr))
	runtime.KeepAlive(m)
	afterCall()
	return loss, nil
}

// Bind lends buf as the parameter name; binding a name again replaces the earlier buffer.
// gradtau reads it during the read calls and once at the start of a run, and writes it
// only when Train, Unlearn or InitWeights publishes its result. A wrong length or unknown
// name is a StatusBinding error. A writing call.
func (m *Model) Bind(name string, buf *Buffer) error {
	const op = "model_bind"
	if buf == nil {
		return &Error{Status: StatusNullPointer, Op: op, Message: "nil *Buffer"}
	}
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return err
	}
	defer done()
	data, err := buf.acquire()
	if err != nil {
		return err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	err = call(op, func() C.gradtau_status {
		// A zero-length Buffer passes NULL, which gradtau_model_bind refuses with
		// StatusNullPointer (no parameter is empty, so nothing legitimate is lost).
		return C.gradtau_model_bind(ptr, cname, data, C.size_t(buf.Len()))
	})
	runtime.KeepAlive(m)
	if err != nil {
		buf.release()
		return err
	}
	if old := m.bound[name]; old != nil {
		old.release()
	}
	m.bound[name] = buf
	return nil
}

// UnbindAll makes gradtau forget every bound buffer. A writing call.
func (m *Model) UnbindAll() error {
	const op = "model_unbind_all"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return err
	}
	defer done()
	err = call(op, func() C.gradtau_status { return C.gradtau_model_unbind_all(ptr) })
	runtime.KeepAlive(m)
	if err != nil {
		return err
	}
	m.releaseBindings()
	return nil
}

func (m *Model) releaseBindings() {
	for name, b := range m.bound {
		b.release()
		delete(m.bound, name)
	}
}

// NewWeights allocates one zeroed Buffer per parameter and binds them all. Close the
// Weights when done with them (their memory lives until the model is closed as well).
func (m *Model) NewWeights() (*Weights, error) {
	params, err := m.Params()
	if err != nil {
		return nil, err
	}
	w := &Weights{index: make(map[string]int, len(params))}
	for _, p := range params {
		b, err := NewBuffer(p.Numel)
		if err == nil {
			err = m.Bind(p.Name, b)
		}
		if err != nil {
			if b != nil {
				_ = b.Close()
			}
			_ = w.Close()
			return nil, err
		}
		w.index[p.Name] = len(w.names)
		w.names = append(w.names, p.Name)
		w.bufs = append(w.bufs, b)
	}
	return w, nil
}

// InitWeights writes PyTorch's default initialisation (seeded) into every bound buffer,
// published like the result of a run (through the publish hook, if one is set). A writing
// call.
func (m *Model) InitWeights(seed uint64) error {
	const op = "model_init_weights"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return err
	}
	defer done()
	err = call(op, func() C.gradtau_status { return C.gradtau_model_init_weights(ptr, C.uint64_t(seed)) })
	runtime.KeepAlive(m)
	return err
}

// Close frees the model, drops its references to the bound buffers (the host's data in
// them is untouched) and forgets its publish hook. While another call on the model is
// running it returns a StatusBusy error and frees nothing; a second Close is a no-op.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	if !m.mu.TryLock() {
		return busy("model_free", "another call on the model is running")
	}
	defer m.mu.Unlock()
	if m.ptr == nil {
		return nil
	}
	C.gradtau_model_free(m.ptr)
	m.ptr = nil
	runtime.SetFinalizer(m, nil)
	// Only after the free: until then gradtau holds the pointers. mu's write side excludes
	// every writer, so bound and hook need no other lock here.
	m.releaseBindings()
	m.hook.delete()
	m.hook = nil
	afterCall()
	return nil
}

// SetThreads caps the CPU threads of every later call on the model (Train, Unlearn,
// InitWeights and the reads); 0, the default, means no cap: every core, or
// MATMUL_NUM_THREADS when set. A call already running keeps its cap. Allowed at any time,
// also while other calls run, so a service can give a run one core and keep the others
// for serving.
func (m *Model) SetThreads(n int) error {
	const op = "model_set_threads"
	if n < 0 {
		return invalid(op, "the thread cap is negative (%d)", n)
	}
	ptr, err := m.acquire(op)
	if err != nil {
		return err
	}
	defer m.mu.RUnlock()
	err = call(op, func() C.gradtau_status { return C.gradtau_model_set_threads(ptr, C.size_t(n)) })
	runtime.KeepAlive(m)
	return err
}

// SetMemoryLimit sets the memory budget, in bytes, of every later call on the model that
// computes: before it allocates anything, such a call estimates its peak memory and fails
// with a StatusResourceLimit error, naming the largest node and the bytes and leaving the
// bound buffers untouched, when the estimate is above the budget. 0 restores the default:
// 3/4 of the memory the machine reports available when the call starts. Allowed at any
// time, also while other calls run; a call already running keeps the budget it started
// with.
func (m *Model) SetMemoryLimit(bytes uint64) error {
	const op = "model_set_memory_limit"
	ptr, err := m.acquire(op)
	if err != nil {
		return err
	}
	defer m.mu.RUnlock()
	err = call(op, func() C.gradtau_status { return C.gradtau_model_set_memory_limit(ptr, C.uint64_t(bytes)) })
	runtime.KeepAlive(m)
	return err
}

// Threads is the cap set by SetThreads (0: none), or 0 after Close.
func (m *Model) Threads() int {
	ptr, err := m.acquire("model_threads")
	if err != nil {
		return 0
	}
	defer m.mu.RUnlock()
	n := int(C.gradtau_model_threads(ptr))
	runtime.KeepAlive(m)
	afterCall()
	return n
}

func goSizes(p *C.size_t, n C.size_t) []int {
	if n == 0 || p == nil {
		return []int{}
	}
	src := unsafe.Slice(p, int(n))
	out := make([]int, len(src))
	for i, v := range src {
		out[i] = int(v)
	}
	return out
}
