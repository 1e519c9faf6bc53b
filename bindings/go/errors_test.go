package gradtau

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
)

const tinySpec = `{"format": "gradtau.model/1", "input": {"shape": [4]},
 "nodes": [{"name": "fc", "op": "linear", "in_features": 4, "out_features": 3}],
 "loss": "cross_entropy"}`

func TestStatusConstants(t *testing.T) {
	// The numbers are ABI: pin them, and their names.
	all := []Status{StatusOK, StatusNullPointer, StatusInvalidArgument, StatusShape,
		StatusNonFinite, StatusSpec, StatusBinding, StatusDeviceUnavailable, StatusUnsupported,
		StatusCancelled, StatusIO, StatusCUDA, StatusBusy, StatusPanic, StatusABIMismatch}
	names := []string{"OK", "NULL_POINTER", "INVALID_ARGUMENT", "SHAPE", "NON_FINITE", "SPEC",
		"BINDING", "DEVICE_UNAVAILABLE", "UNSUPPORTED", "CANCELLED", "IO", "CUDA", "BUSY",
		"PANIC", "ABI_MISMATCH"}
	for i, s := range all {
		if int(s) != i || s.String() != "GRADTAU_"+names[i] {
			t.Fatalf("status %d is %d %q", i, int(s), s.String())
		}
	}
	if Status(99).String() != "GRADTAU_UNKNOWN_STATUS" {
		t.Fatal(Status(99).String())
	}
}

func TestSpecErrors(t *testing.T) {
	_, err := NewModel(`{"format": `)
	wantStatus(t, err, StatusSpec)
	// The message names the node and the field at fault.
	unknownOp := strings.Replace(tinySpec, `"op": "linear"`, `"op": "linnear"`, 1)
	_, err = NewModel(unknownOp)
	wantStatus(t, err, StatusSpec, "linnear")
	badField := strings.Replace(tinySpec, `"out_features"`, `"out_featurs"`, 1)
	_, err = NewModel(badField)
	wantStatus(t, err, StatusSpec, "`fc`", "out_features")
	badType := strings.Replace(tinySpec, `"out_features": 3`, `"out_features": "three"`, 1)
	_, err = NewModel(badType)
	wantStatus(t, err, StatusSpec, "`fc`", "out_features")
	_, err = NewModel("")
	wantStatus(t, err, StatusSpec)
	_, err = NewModel("{\xff}")
	wantStatus(t, err, StatusInvalidArgument)
	if !strings.Contains(err.Error(), "GRADTAU_INVALID_ARGUMENT") || !strings.Contains(err.Error(), "model_new") {
		t.Fatalf("error text %q", err)
	}
}

func TestBindErrors(t *testing.T) {
	m, err := NewModel(tinySpec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	short, _ := NewBuffer(11)
	defer short.Close()
	w, _ := NewBuffer(12)
	defer w.Close()
	b, _ := NewBuffer(3)
	defer b.Close()

	wantStatus(t, m.Bind("fc.weight", short), StatusBinding, "fc.weight", "11")
	wantStatus(t, m.Bind("fc.gamma", w), StatusBinding, "fc.gamma")
	wantStatus(t, m.Bind("fc.weight", nil), StatusNullPointer)
	// A zero-length Buffer has no memory and passes NULL, which gradtau_model_bind refuses.
	empty, _ := NewBuffer(0)
	wantStatus(t, m.Bind("fc.bias", empty), StatusNullPointer)
	empty.Close()
	_, err = m.ParamIndex("fc.gamma")
	wantStatus(t, err, StatusBinding)
	// Distinct Buffers never overlap, but one Buffer cannot hold two parameters.
	twin, err := NewModel(`{"format": "gradtau.model/1", "input": {"shape": [4]},
	 "nodes": [{"name": "a", "op": "linear", "in_features": 4, "out_features": 4},
	           {"name": "b", "op": "linear", "in_features": 4, "out_features": 4}],
	 "loss": "cross_entropy"}`)
	if err != nil {
		t.Fatal(err)
	}
	defer twin.Close()
	shared, _ := NewBuffer(16)
	defer shared.Close()
	if err := twin.Bind("a.weight", shared); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, twin.Bind("b.weight", shared), StatusInvalidArgument, "overlaps")
	if err := m.Bind("fc.weight", w); err != nil {
		t.Fatal(err)
	}
	// A missing binding is reported by name.
	wantStatus(t, m.InitWeights(1), StatusBinding, "fc.bias")
	if err := m.UnbindAll(); err != nil {
		t.Fatal(err)
	}
	if err := m.Bind("fc.bias", b); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, m.InitWeights(1), StatusBinding, "fc.weight")
	if err := m.Bind("fc.weight", w); err != nil {
		t.Fatal(err)
	}
	if err := m.InitWeights(1); err != nil {
		t.Fatal(err)
	}
	// A closed buffer cannot be bound.
	closed, _ := NewBuffer(12)
	closed.Close()
	if err := m.Bind("fc.weight", closed); !errors.Is(err, ErrClosed) {
		t.Fatalf("bind of a closed buffer: %v", err)
	}
	if _, err := NewBuffer(-1); err == nil {
		t.Fatal("negative buffer length accepted")
	}
	if err := w.CopyFrom(make([]float32, 5)); err == nil {
		t.Fatal("CopyFrom with a wrong length accepted")
	}
}

func TestDatasetErrors(t *testing.T) {
	x := make([]float32, 8)
	_, err := NewClassDataset(x[:7], []int{2, 4}, []int32{0, 1})
	wantStatus(t, err, StatusShape)
	_, err = NewClassDataset(x, []int{2, 4}, []int32{0})
	wantStatus(t, err, StatusShape)
	_, err = NewClassDataset(x, []int{2, 4}, []int32{0, -1})
	wantStatus(t, err, StatusInvalidArgument, "negative")
	_, err = NewClassDataset(x, nil, []int32{0, 1})
	wantStatus(t, err, StatusInvalidArgument)
	_, err = NewClassDataset(x, []int{-2, 4}, []int32{0, 1})
	wantStatus(t, err, StatusInvalidArgument, "negative")

	d, err := NewClassDataset(x, []int{2, 4}, []int32{0, 2})
	if err != nil {
		t.Fatal(err)
	}
	labels, err := d.Labels()
	if err != nil || len(labels) != 2 || labels[0] != 0 || labels[1] != 2 {
		t.Fatalf("labels %v, %v", labels, err)
	}
	_, err = d.Subset([]int{1, 2})
	wantStatus(t, err, StatusInvalidArgument)
	_, err = d.Subset([]int{-1})
	wantStatus(t, err, StatusInvalidArgument)
	sub, err := d.Subset([]int{1, 1, 0})
	if err != nil || sub.Len() != 3 {
		t.Fatalf("subset %v", err)
	}
	if labels, _ := sub.Labels(); labels[0] != 2 || labels[2] != 0 {
		t.Fatalf("subset labels %v", labels)
	}
	empty, err := d.Subset(nil)
	if err != nil || empty.Len() != 0 {
		t.Fatalf("empty subset: %v", err)
	}
	for _, s := range []*Dataset{sub, empty, d} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunErrors(t *testing.T) {
	d := newDigits(t, 3)
	m, w := newDigitsModel(t, 5)
	before := w.Snapshot()
	opts, _ := DefaultUnlearnOptions(MethodNablaTau)
	opts.Device = "cpu"

	bad := opts
	bad.Method = 42
	_, err := m.Unlearn(nil, d.forget, d.retain, d.val, &bad)
	wantStatus(t, err, StatusInvalidArgument)
	_, err = DefaultUnlearnOptions(42)
	wantStatus(t, err, StatusInvalidArgument)
	bad = opts
	bad.Device = "tpu"
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &bad)
	wantStatus(t, err, StatusInvalidArgument, "tpu")
	bad = opts
	bad.AlphaMax = 1.5
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &bad)
	wantStatus(t, err, StatusInvalidArgument, "alpha_max")
	bad = opts
	bad.LR = -1
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &bad)
	wantStatus(t, err, StatusInvalidArgument)
	bad = opts
	bad.Epochs = -1
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &bad)
	wantStatus(t, err, StatusInvalidArgument, "Epochs")
	topts, _ := DefaultTrainOptions()
	topts.Optimizer = 9
	_, err = m.Train(nil, d.train, &topts)
	wantStatus(t, err, StatusInvalidArgument)

	_, err = m.Unlearn(nil, nil, d.retain, d.val, &opts)
	wantStatus(t, err, StatusNullPointer, "forget")
	_, err = m.Audit(d.retain, d.forget, nil, 0)
	wantStatus(t, err, StatusNullPointer, "test")

	// Samples that do not fit the model; NaN data.
	wrong, _ := NewClassDataset(make([]float32, 10), []int{2, 5}, []int32{0, 1})
	defer wrong.Close()
	_, err = m.Unlearn(nil, wrong, d.retain, d.val, &opts)
	wantStatus(t, err, StatusShape, "forget")
	_, err = m.Predict(wrong)
	wantStatus(t, err, StatusShape)
	_, err = m.Losses(wrong)
	wantStatus(t, err, StatusShape)
	_, err = m.Predict(nil)
	wantStatus(t, err, StatusNullPointer, "data")
	x := make([]float32, 128)
	x[3] = float32(math.NaN())
	nan, _ := NewClassDataset(x, []int{2, 64}, []int32{0, 1})
	defer nan.Close()
	_, err = m.Unlearn(nil, nan, d.retain, d.val, &opts)
	wantStatus(t, err, StatusNonFinite)

	// NaN in a bound buffer is named.
	bias := w.Get("0.bias")
	saved := bias[0]
	bias[0] = float32(math.NaN())
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusNonFinite, "0.bias")
	bias[0] = saved

	// A missing binding: rebind all but one parameter.
	if err := m.UnbindAll(); err != nil {
		t.Fatal(err)
	}
	for _, name := range w.Names() {
		if name != "2.weight" {
			if err := m.Bind(name, w.Buffer(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusBinding, "2.weight")
	_, err = m.Predict(d.test)
	wantStatus(t, err, StatusBinding, "2.weight")
	_, err = m.Losses(d.test)
	wantStatus(t, err, StatusBinding, "2.weight")
	if !snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("a failed call wrote the host's buffers")
	}
}

var errStop = errors.New("stop here")

// TestCancel: a callback error, a cancelled context and a panicking callback all stop the
// run with the buffers bit-for-bit as they were; KeepPartial keeps the partial weights.
func TestCancel(t *testing.T) {
	d := newDigits(t, 3)
	m, w := newDigitsModel(t, 5)
	trainDigits(t, m, d, 3)
	before := w.Snapshot()
	opts, _ := DefaultUnlearnOptions(MethodNablaTau)
	opts.Seed = 1

	calls := 0
	opts.Progress = func(p Progress) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	}
	_, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusCancelled)
	if !errors.Is(err, errStop) || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	if !snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("a cancelled run changed the weights")
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	opts.Progress = func(p Progress) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return nil
	}
	_, err = m.Unlearn(ctx, d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusCancelled)
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	if !snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("a cancelled run changed the weights")
	}
	// An already-done context never starts the run.
	_, err = m.Train(ctx, d.train, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, StatusCancelled) {
		t.Fatalf("train with a done context: %v", err)
	}

	opts.Progress = func(p Progress) error { panic("callback bug") }
	func() {
		defer func() {
			if r := recover(); r != "callback bug" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_, _ = m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
		t.Fatal("the panic was swallowed")
	}()
	if !snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("a panicking callback changed the weights")
	}
	// The model is still usable after the panic (its lock was released).
	if _, err := m.Audit(d.retain, d.forget, d.test, 0); err != nil {
		t.Fatal(err)
	}

	opts.KeepPartial = true
	calls = 0
	opts.Progress = func(p Progress) error {
		calls++
		if calls == 3 {
			return errStop
		}
		return nil
	}
	_, err = m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusCancelled)
	if snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("KeepPartial did not write the partial weights")
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	d := newDigits(t, 3)
	m, err := NewModel(DigitsMLPSpec())
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.NewWeights()
	if err != nil {
		t.Fatal(err)
	}
	buf := w.Buffer("0.bias")
	// Closing the weights while bound keeps the memory for the model.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Get("0.bias") != nil {
		t.Fatal("a closed buffer still hands out its memory")
	}
	if err := m.InitWeights(3); err != nil {
		t.Fatal(err)
	}
	short, _ := DefaultUnlearnOptions(MethodNablaTau)
	short.MaxSteps = 2
	if _, err := m.Unlearn(nil, d.forget, d.retain, d.val, &short); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if buf.ptr != nil {
		t.Fatal("the buffer outlived both its Close and its model")
	}
	checks := map[string]error{}
	_, checks["Params"] = m.Params()
	_, checks["ParamIndex"] = m.ParamIndex("0.bias")
	_, checks["InputShape"] = m.InputShape()
	_, checks["Loss"] = m.Loss()
	checks["Bind"] = m.Bind("0.bias", buf)
	checks["UnbindAll"] = m.UnbindAll()
	checks["InitWeights"] = m.InitWeights(1)
	_, checks["Train"] = m.Train(nil, d.train, nil)
	_, checks["Unlearn"] = m.Unlearn(nil, d.forget, d.retain, d.val, nil)
	_, checks["Audit"] = m.Audit(d.retain, d.forget, d.test, 0)
	_, checks["Predict"] = m.Predict(d.test)
	_, checks["Losses"] = m.Losses(d.forget)
	_, checks["NewWeights"] = m.NewWeights()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}

	ds, _ := d.train.Subset([]int{0, 1})
	for i := 0; i < 2; i++ {
		if err := ds.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ds.Len() != 0 {
		t.Fatal("Len of a closed set")
	}
	if _, err := ds.Labels(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := ds.Subset([]int{0}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	m2, w2 := newDigitsModel(t, 1)
	_ = w2
	if _, err := m2.Unlearn(nil, d.forget, ds, d.val, nil); !errors.Is(err, ErrClosed) ||
		!strings.Contains(err.Error(), "retain") {
		t.Fatalf("unlearn with a closed set: %v", err)
	}
	if _, err := m2.Predict(ds); !errors.Is(err, ErrClosed) {
		t.Fatalf("predict on a closed set: %v", err)
	}
	if _, err := m2.Losses(ds); !errors.Is(err, ErrClosed) {
		t.Fatalf("losses on a closed set: %v", err)
	}
	var nilModel *Model
	if err := nilModel.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFinalizerBackstop drops handles without Close; the finalizers must free them without
// touching memory a live model still uses.
func TestFinalizerBackstop(t *testing.T) {
	d := newDigits(t, 3)
	m, err := NewModel(DigitsMLPSpec())
	if err != nil {
		t.Fatal(err)
	}
	// Unreferenced Weights: the buffers stay reachable through the model's bindings.
	if _, err := m.NewWeights(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	if err := m.InitWeights(4); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Audit(d.retain, d.forget, d.test, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		mm, err := NewModel(DigitsMLPSpec())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mm.NewWeights(); err != nil {
			t.Fatal(err)
		}
		s, _ := d.train.Subset([]int{i})
		_ = s
	}
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	runtime.KeepAlive(m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
