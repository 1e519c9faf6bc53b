package gradtau

/*
#include <stdint.h>
#include "gradtau.h"

// Defined in trampoline.c: gradtau_model_set_publish_hook with the Go bridge as the hook
// when handle is non-zero, NULL (no hook) otherwise.
gradtau_status gradtau_go_set_publish_hook(gradtau_model *model, uintptr_t handle);
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
)

// PublishHook is called around every publish of new weights into a model's bound buffers.
// At PublishPhaseBegin, returning false keeps the old weights (the writing call then
// returns a StatusCancelled error); PublishPhaseEnd follows only a true at
// PublishPhaseBegin, and its result is ignored.
type PublishHook func(phase PublishPhase) bool

// publishHook is what the cgo.Handle registered as the hook's user_data refers to.
type publishHook struct {
	fn     PublishHook
	handle cgo.Handle
	// panicked holds a panic of fn until the writing call that ran it has returned. Only
	// that call's goroutine touches it: gradtau calls the hook on the thread of the writing
	// call, and writers are exclusive.
	panicked *hookPanic
}

type hookPanic struct{ value any }

// takePanic returns and clears the panic fn raised during the last writing call, if any.
func (h *publishHook) takePanic() *hookPanic {
	if h == nil {
		return nil
	}
	p := h.panicked
	h.panicked = nil
	return p
}

func (h *publishHook) delete() {
	if h != nil {
		h.handle.Delete()
	}
}

// SetPublishHook installs fn as the model's publish hook (nil removes it). gradtau calls it
// on the goroutine of the writing call (Train, Unlearn, InitWeights): with
// PublishPhaseBegin before it writes the bound buffers (take the write lock of the engine
// that reads them; return false to keep the old weights) and with PublishPhaseEnd after
// (release it). It runs outside gradtau's own lock, so it may call the read methods of the
// same model; a writing call from it gets StatusBusy. A panic in fn is held until gradtau
// has returned (a panic at PublishPhaseBegin keeps the old weights) and then re-raised by
// the writing call, so it never unwinds through gradtau's frames.
//
// The hook stays installed until it is replaced or the model is closed; a hook that refers
// to its model keeps the model reachable until Close. A writing call: StatusBusy while a
// run is in progress.
func (m *Model) SetPublishHook(fn PublishHook) error {
	const op = "model_set_publish_hook"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return err
	}
	defer done()
	var next *publishHook
	if fn != nil {
		next = &publishHook{fn: fn}
		next.handle = cgo.NewHandle(next)
	}
	err = call(op, func() C.gradtau_status {
		var h C.uintptr_t
		if next != nil {
			h = C.uintptr_t(next.handle)
		}
		return C.gradtau_go_set_publish_hook(ptr, h)
	})
	runtime.KeepAlive(m)
	if err != nil {
		next.delete()
		return err
	}
	// gradtau has dropped the old hook and no writer can be running it (we hold the writer
	// side), so its handle can go.
	m.hook.delete()
	m.hook = next
	return nil
}

// gradtauGoPublish is the hook gradtau calls (through trampoline.c). It never lets a panic
// escape into gradtau's frames.
//
//export gradtauGoPublish
func gradtauGoPublish(phase C.gradtau_publish_phase, handle C.uintptr_t) (refuse C.int32_t) {
	h := cgo.Handle(handle).Value().(*publishHook)
	defer func() {
		if r := recover(); r != nil {
			if h.panicked == nil {
				h.panicked = &hookPanic{value: r}
			}
			refuse = 1
		}
		if debugForceGC {
			runtime.GC()
		}
	}()
	if h.fn(PublishPhase(phase)) {
		return 0
	}
	return 1
}
