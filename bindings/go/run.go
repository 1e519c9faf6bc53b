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
	"math"
	"runtime"
	"runtime/cgo"
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
// before the run); its writing methods return StatusBusy. A panic is caught, cancels the
// run, and is re-raised once gradtau has returned, so it never unwinds through gradtau's
// frames.
type ProgressFunc func(Progress) error

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
	// Truncated is true when MaxSteps cut the run short (StopReason is
	// StopReasonMaxSteps).
	Truncated bool
	// StopReason is why the run ended.
	StopReason StopReason
}

// String is the C name of the stop reason ("GRADTAU_STOP_FORGOTTEN"), or
// "GRADTAU_STOP_UNKNOWN" for a number the library does not define.
func (r StopReason) String() string {
	name := C.GoString(C.gradtau_stop_reason_name(C.gradtau_stop_reason(r)))
	afterCall()
	return name
}

// String is the metric's short name ("accuracy", "mse", "mae", "macro_f1"), or "unknown"
// for a number the library does not define.
func (m Metric) String() string {
	name := C.GoString(C.gradtau_metric_name(C.gradtau_metric(m)))
	afterCall()
	return name
}

// MetricScores is one task metric on the three sets of an audit.
type MetricScores struct {
	Metric               Metric
	Retain, Forget, Test float64
}

// AttackScores is what one membership attack achieves (forget set = members, test set =
// non-members); NaN where a score does not apply or was not measured.
type AttackScores struct {
	// Accuracy is the balanced accuracy (0.5: chance).
	Accuracy float64
	// AUC is the ROC AUC (0.5: chance).
	AUC float64
	// TPRAt1PctFPR is the true-positive rate at 1 % false positives (NaN with fewer than
	// 100 test samples).
	TPRAt1PctFPR float64
}

// AuditRow is what an audit measured: the task's metric on the three sets and the
// membership attacks. Accuracies and MIAEntropy are NaN for models without class labels.
type AuditRow struct {
	RetainAccuracy, ForgetAccuracy, TestAccuracy float64
	// MIALoss is the paper's attack accuracy on the per-sample loss (Paper.Accuracy).
	MIALoss float64
	// MIAEntropy is the paper's attack accuracy on the softmax entropy.
	MIAEntropy float64
	// Metric is the task's primary metric: accuracy (classification), MSE (regression) or
	// macro F1 (multi-label), following the model's loss.
	Metric MetricScores
	// Secondary is the task's second metric (MAE for regression), nil if it has none.
	Secondary *MetricScores
	// Paper is the paper's attack (logistic regression on the raw loss), LogLoss the same on
	// ln(loss + ε), Threshold one loss threshold (lower ⇒ member).
	Paper, LogLoss, Threshold AttackScores
	// Strongest is the largest distance from chance among the attacks' held-out accuracies
	// and AUCs (0: the forget set looks unseen; NaN if the attacks did not run).
	Strongest float64
	// AttackSamples is the number of samples per side the attacks ran on (0: too few).
	AttackSamples int
}

// auditRowFrom reads everything an audit report holds.
func auditRowFrom(r *C.gradtau_audit_report) AuditRow {
	value := func(m Metric, set C.gradtau_audit_set) float64 {
		return float64(C.gradtau_audit_report_value(r, C.gradtau_metric(m), set))
	}
	scores := func(m Metric) MetricScores {
		return MetricScores{
			Metric: m,
			Retain: value(m, C.GRADTAU_AUDIT_SET_RETAIN),
			Forget: value(m, C.GRADTAU_AUDIT_SET_FORGET),
			Test:   value(m, C.GRADTAU_AUDIT_SET_TEST),
		}
	}
	attack := func(a Attack) AttackScores {
		s := func(score Score) float64 {
			return float64(C.gradtau_audit_report_attack(r, C.gradtau_attack(a), C.gradtau_score(score)))
		}
		return AttackScores{Accuracy: s(ScoreAccuracy), AUC: s(ScoreAUC), TPRAt1PctFPR: s(ScoreTPRAt1PctFPR)}
	}
	row := AuditRow{
		Metric:        scores(Metric(C.gradtau_audit_report_metric(r))),
		Paper:         attack(AttackPaper),
		LogLoss:       attack(AttackLogLoss),
		Threshold:     attack(AttackThreshold),
		MIAEntropy:    attack(AttackEntropy).Accuracy,
		Strongest:     float64(C.gradtau_audit_report_strongest(r)),
		AttackSamples: int(C.gradtau_audit_report_attack_samples(r)),
	}
	row.MIALoss = row.Paper.Accuracy
	acc := scores(MetricAccuracy)
	row.RetainAccuracy, row.ForgetAccuracy, row.TestAccuracy = acc.Retain, acc.Forget, acc.Test
	// A reported metric has a value on the retain set; the others read NaN.
	for _, m := range allMetrics {
		if s := scores(m); m != row.Metric.Metric && !math.IsNaN(s.Retain) {
			row.Secondary = &s
			break
		}
	}
	return row
}

func nonNegative(op string, fields ...any) error {
	for i := 0; i < len(fields); i += 2 {
		if v := fields[i+1].(int); v < 0 {
			return invalid(op, "%s is negative (%d)", fields[i], v)
		}
	}
	return nil
}

// cString returns s in C memory (NULL for ""), freed by the caller after the call: an options
// struct is Go memory and may only hold C pointers.
func cString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// goString copies a C string (NULL reads as "").
func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// unlearnOptionsToC fills the C struct from opts: _default first (struct_size, the ABI check;
// the method is validated by gradtau_unlearn itself, so an unknown one is not rejected here),
// then every field. The returned function frees its C strings.
func unlearnOptionsToC(op string, opts *UnlearnOptions) (*C.gradtau_unlearn_options, func(), error) {
	var c C.gradtau_unlearn_options
	if err := call(op, func() C.gradtau_status {
		return C.gradtau_unlearn_options_default(C.GRADTAU_METHOD_NABLA_TAU, &c)
	}); err != nil {
		return nil, nil, err
	}
	free, err := opts.copyTo(op, &c)
	if err != nil {
		return nil, nil, err
	}
	return &c, free, nil
}

// trainOptionsToC is unlearnOptionsToC for gradtau_train_options.
func trainOptionsToC(op string, opts *TrainOptions) (*C.gradtau_train_options, func(), error) {
	var c C.gradtau_train_options
	if err := call(op, func() C.gradtau_status { return C.gradtau_train_options_default(&c) }); err != nil {
		return nil, nil, err
	}
	free, err := opts.copyTo(op, &c)
	if err != nil {
		return nil, nil, err
	}
	return &c, free, nil
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
		StopReason:      StopReason(C.gradtau_report_stop_reason(report)),
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
		c, free, err := unlearnOptionsToC(op, opts)
		if err != nil {
			return Report{}, err
		}
		defer free()
		copts, progress = c, opts.Progress
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
		c, free, err := trainOptionsToC(op, opts)
		if err != nil {
			return Report{}, err
		}
		defer free()
		copts, progress = c, opts.Progress
	}
	r, err := runWithProgress(ctx, op, progress, func(h C.uintptr_t, out **C.gradtau_report) C.gradtau_status {
		return C.gradtau_go_train(ptr, sets[0], copts, h, out)
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(data)
	return r, err
}

// Audit measures the bound weights: the task's metric on retain, forget and test, and the
// membership attacks (forget = members, test = non-members), seeded by seed. It reads the
// buffers and never writes them.
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
	var report *C.gradtau_audit_report
	err = call(op, func() C.gradtau_status {
		return C.gradtau_audit_report_new(ptr, sets[0], sets[1], sets[2], C.uint64_t(seed), &report)
	})
	runtime.KeepAlive(m)
	runtime.KeepAlive(retain)
	runtime.KeepAlive(forget)
	runtime.KeepAlive(test)
	if err != nil {
		return AuditRow{}, err
	}
	defer C.gradtau_audit_report_free(report)
	return auditRowFrom(report), nil
}
