package gradtau

/*
#include <stdint.h>
#include <stdlib.h>
#include "gradtau.h"

// Defined in trampoline.c: gradtau_unlearn / gradtau_train with the Go progress bridge as
// callback when handle is non-zero.
gradtau_status gradtau_go_unlearn(gradtau_model *model, const gradtau_dataset *forget,
                                  const gradtau_dataset *retain, const gradtau_dataset *val,
                                  const gradtau_unlearn_options *options, uintptr_t handle,
                                  gradtau_report **report_out);
gradtau_status gradtau_go_train(gradtau_model *model, const gradtau_dataset *data,
                                const gradtau_train_options *options, uintptr_t handle,
                                gradtau_report **report_out);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Method is the unlearning method of Unlearn.
type Method int32

// The methods of include/gradtau.h.
const (
	// MethodNablaTau is ∇τ (the default).
	MethodNablaTau Method = C.GRADTAU_METHOD_NABLA_TAU
	// MethodFinetune fine-tunes on the retain set.
	MethodFinetune Method = C.GRADTAU_METHOD_FINETUNE
	// MethodNegGrad is gradient ascent on the forget set.
	MethodNegGrad Method = C.GRADTAU_METHOD_NEGGRAD
	// MethodNegGradPlus is weighted ascent on forget plus descent on retain.
	MethodNegGradPlus Method = C.GRADTAU_METHOD_NEGGRAD_PLUS
)

// NablaTauMode is the variant of ∇τ.
type NablaTauMode int32

// The ∇τ modes.
const (
	// ModeAdaptive: distribution-matching target, non-decaying α, audit-based switch-off
	// (the default).
	ModeAdaptive NablaTauMode = C.GRADTAU_NABLA_TAU_MODE_ADAPTIVE
	// ModePaper: the authors' recipe, faithfully.
	ModePaper NablaTauMode = C.GRADTAU_NABLA_TAU_MODE_PAPER
)

// Optimizer is the optimizer of Train.
type Optimizer int32

// The optimizers.
const (
	OptimizerSGD   Optimizer = C.GRADTAU_OPTIMIZER_SGD
	OptimizerAdam  Optimizer = C.GRADTAU_OPTIMIZER_ADAM
	OptimizerAdamW Optimizer = C.GRADTAU_OPTIMIZER_ADAMW
)

// Progress is what the progress function is told after every optimisation step.
type Progress struct {
	// Method is "nabla_tau", "finetune", "neggrad", "neggrad_plus" or "train".
	Method string
	// Epoch is 0-based; Epochs the planned number.
	Epoch, Epochs int
	// Step is 0-based; TotalSteps the planned number.
	Step, TotalSteps int
	// ForgetLoss and RetainLoss are the mean batch losses (NaN where the method has none;
	// ForgetLoss is also NaN in ∇τ's repair phase, once the forget term is off).
	ForgetLoss, RetainLoss float32
	Alpha                  float32
	// Tau is the current target loss τ (NaN outside ∇τ).
	Tau float32
	LR  float32
}

// ProgressFunc is called after every step, on the goroutine that made the call. A non-nil
// error cancels the run: the call returns a StatusCancelled *Error whose Cause is that
// error (errors.Is sees both), and the bound buffers stay bit-for-bit unchanged unless
// KeepPartial. It may call the read methods of the same model (they see the weights from
// before the run); its writing methods return StatusBusy. A panic is caught, cancels the run, and is re-raised once
// gradtau has returned, so it never unwinds through gradtau's frames.
type ProgressFunc func(Progress) error

// UnlearnOptions mirrors gradtau_unlearn_options. Start from DefaultUnlearnOptions; fields
// a method does not use are ignored.
type UnlearnOptions struct {
	Method Method
	// Mode is the ∇τ variant.
	Mode NablaTauMode
	// BatchSize: ∇τ reads 0 as its own rule; baselines need a positive value.
	BatchSize int
	// LR is the AdamW learning rate. ∇τ: NaN (its default) picks the mode's rule (paper:
	// 1e-3; adaptive: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3]).
	LR          float32
	WeightDecay float32
	// LREndFactor (∇τ): the rate decays linearly to LR * LREndFactor.
	LREndFactor float32
	// Alpha0 (∇τ): the initial forget weight in [0, 1]; NaN picks the mode's default
	// (paper: 5/3 · forget fraction; adaptive: 0.4).
	Alpha0 float32
	// AlphaMax (∇τ adaptive): the largest value α's controller may raise α to, in
	// [Alpha0, 1]; NaN picks 0.8. Set it to Alpha0 to keep α on its schedule.
	AlphaMax float32
	// Epochs: ∇τ forget-epochs, 0 picks its rule; baselines need a positive value.
	Epochs int
	// TauEvery (∇τ paper mode): τ is recomputed every this many forget-epochs.
	TauEvery int
	// NormTraining (∇τ): run normalisation layers in training mode.
	NormTraining bool
	// StopMargin (∇τ adaptive): the membership-test margin under which forgetting stops.
	StopMargin float32
	// RetainWeight (NegGrad+): weight of the retain term, in [0, 1].
	RetainWeight float32
	Seed         uint64
	// Device is "auto", "cpu", "cuda" or "cuda:N"; "" means "auto".
	Device string
	// KeepPartial: a cancelled or failed run still writes the weights it reached.
	KeepPartial bool
	// MaxSteps (∇τ): stop after this many steps (Report.Truncated); 0 = no limit.
	MaxSteps int
	// Progress, if set, is called after every step.
	Progress ProgressFunc
}

// TrainOptions mirrors gradtau_train_options. Start from DefaultTrainOptions.
type TrainOptions struct {
	Optimizer   Optimizer
	LR          float32
	WeightDecay float32
	// Momentum and Nesterov apply to SGD only.
	Momentum  float32
	Nesterov  bool
	Epochs    int
	BatchSize int
	// ClipNorm clips the global gradient norm; 0 = no clipping.
	ClipNorm float32
	Seed     uint64
	// Device as in UnlearnOptions; "" means "cpu".
	Device      string
	KeepPartial bool
	Progress    ProgressFunc
}

// Report is what a completed run did (copied out of the C report, which is freed at once).
type Report struct {
	// Method is the method that ran ("nabla_tau", ..., "train").
	Method string
	// Epochs is the planned number of epochs (forget-epochs for ∇τ).
	Epochs int
	// Steps is the number of optimisation steps taken.
	Steps int
	// Seconds is the wall-clock time of the run.
	Seconds float64
	// LR is the learning rate at the first step (∇τ's default depends on the mode and the
	// forget fraction).
	LR float32
	// FinalAlpha and FinalTau are ∇τ's last α and τ (NaN for other methods).
	FinalAlpha, FinalTau float32
	// ForgetStoppedAt is the forget-epoch at which ∇τ adaptive switched its forget term
	// off, or -1.
	ForgetStoppedAt int64
	// Truncated is true when MaxSteps cut the run short.
	Truncated bool
}

// AuditRow holds accuracies on the three sets and the membership-inference attack's
// accuracy (≈ 0.5: the forget set looks unseen). Accuracies and MIAEntropy are NaN for
// models without class labels.
type AuditRow struct {
	RetainAccuracy, ForgetAccuracy, TestAccuracy float64
	// MIALoss is the attack accuracy on the per-sample loss.
	MIALoss float64
	// MIAEntropy is the attack accuracy on the softmax entropy.
	MIAEntropy float64
}

// DefaultUnlearnOptions returns the library's defaults for method.
func DefaultUnlearnOptions(method Method) (UnlearnOptions, error) {
	var c C.gradtau_unlearn_options
	if err := call("unlearn_options_default", func() C.gradtau_status {
		return C.gradtau_unlearn_options_default(C.gradtau_method(method), &c)
	}); err != nil {
		return UnlearnOptions{}, err
	}
	o := UnlearnOptions{
		Method:       Method(c.method),
		Mode:         NablaTauMode(c.nabla_tau_mode),
		BatchSize:    int(c.batch_size),
		LR:           float32(c.lr),
		WeightDecay:  float32(c.weight_decay),
		LREndFactor:  float32(c.lr_end_factor),
		Alpha0:       float32(c.alpha0),
		AlphaMax:     float32(c.alpha_max),
		Epochs:       int(c.epochs),
		TauEvery:     int(c.tau_every),
		NormTraining: bool(c.norm_training),
		StopMargin:   float32(c.stop_margin),
		RetainWeight: float32(c.retain_weight),
		Seed:         uint64(c.seed),
		KeepPartial:  bool(c.keep_partial),
		MaxSteps:     int(c.max_steps),
	}
	if c.device != nil {
		o.Device = C.GoString(c.device)
	}
	return o, nil
}

// DefaultTrainOptions returns the training defaults (AdamW, lr 1e-3, weight decay 0.01,
// 10 epochs, batch 64, CPU).
func DefaultTrainOptions() (TrainOptions, error) {
	var c C.gradtau_train_options
	if err := call("train_options_default", func() C.gradtau_status {
		return C.gradtau_train_options_default(&c)
	}); err != nil {
		return TrainOptions{}, err
	}
	o := TrainOptions{
		Optimizer:   Optimizer(c.optimizer),
		LR:          float32(c.lr),
		WeightDecay: float32(c.weight_decay),
		Momentum:    float32(c.momentum),
		Nesterov:    bool(c.nesterov),
		Epochs:      int(c.epochs),
		BatchSize:   int(c.batch_size),
		ClipNorm:    float32(c.clip_norm),
		Seed:        uint64(c.seed),
		KeepPartial: bool(c.keep_partial),
	}
	if c.device != nil {
		o.Device = C.GoString(c.device)
	}
	return o, nil
}

func nonNegative(op string, fields ...any) error {
	for i := 0; i < len(fields); i += 2 {
		if v := fields[i+1].(int); v < 0 {
			return invalid(op, "%s is negative (%d)", fields[i], v)
		}
	}
	return nil
}

// cDevice returns the device string in C memory (NULL for ""), freed by the caller after
// the call: the options struct is Go memory and may only hold C pointers.
func cDevice(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

func (o *UnlearnOptions) toC(op string) (C.gradtau_unlearn_options, error) {
	var c C.gradtau_unlearn_options
	if err := nonNegative(op, "BatchSize", o.BatchSize, "Epochs", o.Epochs,
		"TauEvery", o.TauEvery, "MaxSteps", o.MaxSteps); err != nil {
		return c, err
	}
	// The _default call sets struct_size (the ABI check); the method is validated by
	// gradtau_unlearn itself, so an unknown one is not rejected here.
	if err := call(op, func() C.gradtau_status {
		return C.gradtau_unlearn_options_default(C.GRADTAU_METHOD_NABLA_TAU, &c)
	}); err != nil {
		return c, err
	}
	c.method = C.gradtau_method(o.Method)
	c.nabla_tau_mode = C.gradtau_nabla_tau_mode(o.Mode)
	c.batch_size = C.size_t(o.BatchSize)
	c.lr = C.float(o.LR)
	c.weight_decay = C.float(o.WeightDecay)
	c.lr_end_factor = C.float(o.LREndFactor)
	c.alpha0 = C.float(o.Alpha0)
	c.alpha_max = C.float(o.AlphaMax)
	c.epochs = C.size_t(o.Epochs)
	c.tau_every = C.size_t(o.TauEvery)
	c.norm_training = C.bool(o.NormTraining)
	c.stop_margin = C.float(o.StopMargin)
	c.retain_weight = C.float(o.RetainWeight)
	c.seed = C.uint64_t(o.Seed)
	c.keep_partial = C.bool(o.KeepPartial)
	c.max_steps = C.size_t(o.MaxSteps)
	c.device = cDevice(o.Device)
	return c, nil
}

func (o *TrainOptions) toC(op string) (C.gradtau_train_options, error) {
	var c C.gradtau_train_options
	if err := nonNegative(op, "Epochs", o.Epochs, "BatchSize", o.BatchSize); err != nil {
		return c, err
	}
	if err := call(op, func() C.gradtau_status { return C.gradtau_train_options_default(&c) }); err != nil {
		return c, err
	}
	c.optimizer = C.gradtau_optimizer(o.Optimizer)
	c.lr = C.float(o.LR)
	c.weight_decay = C.float(o.WeightDecay)
	c.momentum = C.float(o.Momentum)
	c.nesterov = C.bool(o.Nesterov)
	c.epochs = C.size_t(o.Epochs)
	c.batch_size = C.size_t(o.BatchSize)
	c.clip_norm = C.float(o.ClipNorm)
	c.seed = C.uint64_t(o.Seed)
	c.keep_partial = C.bool(o.KeepPartial)
	c.device = cDevice(o.Device)
	return c, nil
}

// progressState is what the cgo.Handle passed as user_data refers to: one per run.
type progressState struct {
	ctx      context.Context
	fn       ProgressFunc
	cause    error // why the run was cancelled
	panicked bool
	panicVal any
}

// gradtauGoProgress is the callback gradtau calls after every step (through trampoline.c).
// It never lets a panic escape into gradtau's frames.
//
//export gradtauGoProgress
func gradtauGoProgress(p *C.gradtau_progress, handle C.uintptr_t) (cancel C.int32_t) {
	st := cgo.Handle(handle).Value().(*progressState)
	defer func() {
		if r := recover(); r != nil {
			st.panicked, st.panicVal = true, r
			cancel = 1
		}
		if debugForceGC {
			runtime.GC()
		}
	}()
	if err := st.ctx.Err(); err != nil {
		st.cause = err
		return 1
	}
	if st.fn == nil {
		return 0
	}
	err := st.fn(Progress{
		Method:     C.GoString(p.method),
		Epoch:      int(p.epoch),
		Epochs:     int(p.epochs),
		Step:       int(p.step),
		TotalSteps: int(p.total_steps),
		ForgetLoss: float32(p.forget_loss),
		RetainLoss: float32(p.retain_loss),
		Alpha:      float32(p.alpha),
		Tau:        float32(p.tau),
		LR:         float32(p.lr),
	})
	if err != nil {
		st.cause = err
		return 1
	}
	return 0
}

// runWithProgress makes one train/unlearn call with the progress bridge installed when it
// is needed, and turns its outcome into a Report or an error.
func runWithProgress(ctx context.Context, op string, fn ProgressFunc,
	f func(handle C.uintptr_t, report **C.gradtau_report) C.gradtau_status) (Report, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return Report{}, &Error{Status: StatusCancelled, Op: op, Message: "the context was done before the run", Cause: err}
	}
	var st *progressState
	var handle cgo.Handle
	if fn != nil || ctx.Done() != nil {
		st = &progressState{ctx: ctx, fn: fn}
		handle = cgo.NewHandle(st)
		defer handle.Delete()
	}
	var report *C.gradtau_report
	err := call(op, func() C.gradtau_status { return f(C.uintptr_t(handle), &report) })
	if st != nil && st.panicked {
		// gradtau has returned (buffers untouched), so the panic can now unwind normally.
		panic(st.panicVal)
	}
	if err != nil {
		if e, ok := err.(*Error); ok && e.Status == StatusCancelled && st != nil {
			e.Cause = st.cause
		}
		return Report{}, err
	}
	r := Report{
		Method:          C.GoString(C.gradtau_report_method(report)),
		Epochs:          int(C.gradtau_report_epochs(report)),
		Steps:           int(C.gradtau_report_steps(report)),
		Seconds:         float64(C.gradtau_report_seconds(report)),
		LR:              float32(C.gradtau_report_lr(report)),
		FinalAlpha:      float32(C.gradtau_report_final_alpha(report)),
		FinalTau:        float32(C.gradtau_report_final_tau(report)),
		ForgetStoppedAt: int64(C.gradtau_report_forget_stopped_at(report)),
		Truncated:       bool(C.gradtau_report_truncated(report)),
	}
	C.gradtau_report_free(report)
	afterCall()
	return r, nil
}

// acquireSets pins several data sets open; the returned func releases them.
func acquireSets(op string, names []string, sets []*Dataset) ([]*C.gradtau_dataset, func(), error) {
	ptrs := make([]*C.gradtau_dataset, 0, len(sets))
	release := func() {
		for i := range ptrs {
			sets[i].mu.RUnlock()
		}
	}
	for i, d := range sets {
		p, err := d.acquire(op)
		if err != nil {
			release()
			if e, ok := err.(*Error); ok {
				e.Message = fmt.Sprintf("%s: %s", names[i], e.Message)
				return nil, nil, e
			}
			return nil, nil, fmt.Errorf("%w (the %s set)", err, names[i])
		}
		ptrs = append(ptrs, p)
	}
	return ptrs, release, nil
}

// Unlearn removes forget from the model's bound weights with the method in opts (nil: ∇τ
// with its defaults), using retain and val (held-out data the model never trained on).
// The bound buffers receive the new weights only if the run succeeds; on any error or a
// cancellation they are bit-for-bit unchanged (unless opts.KeepPartial). ctx cancels the
// run at the next step boundary (the error then has Cause ctx.Err()).
func (m *Model) Unlearn(ctx context.Context, forget, retain, val *Dataset, opts *UnlearnOptions) (Report, error) {
	const op = "unlearn"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return Report{}, err
	}
	defer done()
	sets, release, err := acquireSets(op, []string{"forget", "retain", "val"}, []*Dataset{forget, retain, val})
	if err != nil {
		return Report{}, err
	}
	defer release()
	var copts *C.gradtau_unlearn_options
	var progress ProgressFunc
	if opts != nil {
		c, err := opts.toC(op)
		if err != nil {
			return Report{}, err
		}
		defer C.free(unsafe.Pointer(c.device))
		copts, progress = &c, opts.Progress
	}
	r, err := runWithProgress(ctx, op, progress, func(h C.uintptr_t, out **C.gradtau_report) C.gradtau_status {
		return C.gradtau_go_unlearn(ptr, sets[0], sets[1], sets[2], copts, h, out)
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(forget)
	runtime.KeepAlive(retain)
	runtime.KeepAlive(val)
	return r, err
}

// Train trains the model's bound weights on data (an original model, or the retrain
// reference). Buffers, cancellation and errors as in Unlearn; opts nil means the defaults.
func (m *Model) Train(ctx context.Context, data *Dataset, opts *TrainOptions) (Report, error) {
	const op = "train"
	ptr, done, err := m.acquireWrite(op)
	if err != nil {
		return Report{}, err
	}
	defer done()
	sets, release, err := acquireSets(op, []string{"data"}, []*Dataset{data})
	if err != nil {
		return Report{}, err
	}
	defer release()
	var copts *C.gradtau_train_options
	var progress ProgressFunc
	if opts != nil {
		c, err := opts.toC(op)
		if err != nil {
			return Report{}, err
		}
		defer C.free(unsafe.Pointer(c.device))
		copts, progress = &c, opts.Progress
	}
	r, err := runWithProgress(ctx, op, progress, func(h C.uintptr_t, out **C.gradtau_report) C.gradtau_status {
		return C.gradtau_go_train(ptr, sets[0], copts, h, out)
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(data)
	return r, err
}

// Audit measures the bound weights: accuracy on retain, forget and test, and the
// membership-inference attack (forget = members, test = non-members), seeded by seed. It
// reads the buffers and never writes them.
func (m *Model) Audit(retain, forget, test *Dataset, seed uint64) (AuditRow, error) {
	const op = "audit"
	ptr, err := m.acquire(op)
	if err != nil {
		return AuditRow{}, err
	}
	defer m.mu.RUnlock()
	sets, release, err := acquireSets(op, []string{"retain", "forget", "test"}, []*Dataset{retain, forget, test})
	if err != nil {
		return AuditRow{}, err
	}
	defer release()
	var row C.gradtau_audit_row
	err = call(op, func() C.gradtau_status {
		return C.gradtau_audit(ptr, sets[0], sets[1], sets[2], C.uint64_t(seed), &row)
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(retain)
	runtime.KeepAlive(forget)
	runtime.KeepAlive(test)
	if err != nil {
		return AuditRow{}, err
	}
	return AuditRow{
		RetainAccuracy: float64(row.retain_accuracy),
		ForgetAccuracy: float64(row.forget_accuracy),
		TestAccuracy:   float64(row.test_accuracy),
		MIALoss:        float64(row.mia_loss),
		MIAEntropy:     float64(row.mia_entropy),
	}, nil
}
