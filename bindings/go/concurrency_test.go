package gradtau

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestConcurrentModels: two goroutines unlearn their own models at once, sharing the
// (immutable) data sets; each result must equal the same run done alone.
func TestConcurrentModels(t *testing.T) {
	d := newDigits(t, 3)
	type run struct {
		m      *Model
		w      *Weights
		report Report
		err    error
	}
	runs := make([]*run, 2)
	for i := range runs {
		m, w := newDigitsModel(t, uint64(10+i))
		trainDigits(t, m, d, 5)
		runs[i] = &run{m: m, w: w}
	}
	opts, _ := DefaultUnlearnOptions(MethodNablaTau)
	opts.Seed, opts.Device = 7, "cpu"
	// The reference: a third model trained like run 0, unlearned alone.
	ref, refW := newDigitsModel(t, 10)
	trainDigits(t, ref, d, 5)
	if _, err := ref.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func(r *run) {
			defer wg.Done()
			o := opts
			o.Progress = func(Progress) error { return nil }
			r.report, r.err = r.m.Unlearn(context.Background(), d.forget, d.retain, d.val, &o)
		}(r)
	}
	wg.Wait()
	for i, r := range runs {
		if r.err != nil || r.report.Steps == 0 {
			t.Fatalf("run %d: %+v, %v", i, r.report, r.err)
		}
		row, err := r.m.Audit(d.retain, d.forget, d.test, 0)
		if err != nil {
			t.Fatal(err)
		}
		if row.ForgetAccuracy > 0.3 || row.RetainAccuracy < 0.85 {
			t.Fatalf("run %d: %+v", i, row)
		}
	}
	if !snapshotsEqual(refW.Snapshot(), runs[0].w.Snapshot()) {
		t.Fatal("a concurrent run differs from the same run done alone")
	}
}

// TestWritersExclusiveReadsGoOn: while a run on a model waits inside its progress
// callback, every writing call on that model, from another goroutine or re-entered from the
// callback, gets StatusBusy at once and Close refuses; every read goes on, from another
// goroutine and from the callback, and sees the weights from before the run.
func TestWritersExclusiveReadsGoOn(t *testing.T) {
	d := newDigits(t, 3)
	m, w := newDigitsModel(t, 1)
	other, _ := newDigitsModel(t, 2)
	before := w.Snapshot()
	logitsBefore, err := m.Predict(d.test)
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := d.test.Inputs()
	if err != nil {
		t.Fatal(err)
	}

	inside := make(chan struct{})
	proceed := make(chan struct{})
	var reentrant, reentrantClose, reentrantReadErr error
	var reentrantRead []float32
	opts, _ := DefaultUnlearnOptions(MethodNablaTau)
	opts.MaxSteps = 4
	first := true
	opts.Progress = func(p Progress) error {
		if first {
			first = false
			reentrant = m.InitWeights(9)
			reentrantClose = m.Close()
			reentrantRead, reentrantReadErr = m.Predict(d.test)
			close(inside)
			<-proceed
		}
		return nil
	}
	done := make(chan error)
	go func() {
		_, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts)
		done <- err
	}()
	<-inside

	// Writers: refused at once.
	_, err = m.Unlearn(context.Background(), d.forget, d.retain, d.val, nil)
	wantStatus(t, err, StatusBusy)
	_, err = m.Train(context.Background(), d.train, nil)
	wantStatus(t, err, StatusBusy)
	wantStatus(t, m.InitWeights(3), StatusBusy)
	wantStatus(t, m.Bind("0.bias", w.Buffer("0.bias")), StatusBusy)
	wantStatus(t, m.UnbindAll(), StatusBusy)
	wantStatus(t, m.SetPublishHook(func(PublishPhase) bool { return true }), StatusBusy)
	wantStatus(t, m.Close(), StatusBusy)
	wantStatus(t, d.forget.Close(), StatusBusy)

	// Reads: served, from the weights before the run.
	if _, err := m.Audit(d.retain, d.forget, d.test, 0); err != nil {
		t.Fatal(err)
	}
	logits, err := m.Predict(d.test)
	if err != nil || !floatsEqual(logits, logitsBefore) {
		t.Fatalf("Predict during the run: %v (equal to before: %v)", err, floatsEqual(logits, logitsBefore))
	}
	if _, err := m.Losses(d.forget); err != nil {
		t.Fatal(err)
	}
	raw, err := m.Infer(inputs, d.test.Len(), OutputRaw)
	if err != nil || !floatsEqual(raw, logitsBefore) {
		t.Fatalf("Infer during the run: %v", err)
	}
	if _, err := m.Classify(inputs, d.test.Len()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Params(); err != nil {
		t.Fatal(err)
	}
	// The thread cap is a setting, allowed at any time.
	if err := m.SetThreads(1); err != nil || m.Threads() != 1 {
		t.Fatalf("SetThreads during a run: %v, cap %d", err, m.Threads())
	}
	if _, err := other.Audit(d.retain, d.forget, d.test, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Predict(d.test); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantStatus(t, reentrant, StatusBusy)
	wantStatus(t, reentrantClose, StatusBusy)
	if reentrantReadErr != nil || !floatsEqual(reentrantRead, logitsBefore) {
		t.Fatalf("Predict from the progress callback: %v", reentrantReadErr)
	}
	if snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("the run did not write its result")
	}
	// Nothing is stuck: the writer side was released and the reads see the new model.
	if logits, err := m.Predict(d.test); err != nil || floatsEqual(logits, logitsBefore) {
		t.Fatalf("Predict after the run: %v", err)
	}
	if err := m.InitWeights(9); err != nil {
		t.Fatal(err)
	}
}

// TestParallelQueries hammers one model and one data set from many goroutines with the
// calls that may run concurrently, while a run is in flight.
func TestParallelQueries(t *testing.T) {
	d := newDigits(t, 3)
	m, _ := newDigitsModel(t, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		opts, _ := DefaultUnlearnOptions(MethodNablaTau)
		opts.MaxSteps = 20
		if _, err := m.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil && !errors.Is(err, StatusBusy) {
			errs <- err
		}
	}()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := m.Params(); err != nil {
					errs <- err
					return
				}
				if _, err := m.OutputShape(); err != nil {
					errs <- err
					return
				}
				if d.retain.Len() == 0 {
					errs <- errors.New("empty retain set")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
