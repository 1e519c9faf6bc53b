package gradtau

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// requests is the first n test images of the digits split as unlabelled inputs.
func requests(t *testing.T, d *digits, n int) []float32 {
	t.Helper()
	all, err := d.test.Inputs()
	if err != nil {
		t.Fatal(err)
	}
	return all[:n*64]
}

// liveOptions is a ∇τ run that takes its planned steps (paper mode), long enough for many
// reads to overlap it.
func liveOptions(epochs int) UnlearnOptions {
	o, _ := DefaultUnlearnOptions(MethodNablaTau)
	o.Mode, o.Device, o.Seed, o.Epochs = ModePaper, "cpu", 3, epochs
	return o
}

// reader predicts in a loop on its own goroutine and sorts what it sees: the model before,
// or something else, kept to be compared with the model after once that is known.
type reader struct {
	predictions, busy, errors, matchedBefore int
	other                                    [][]float32
	firstErr                                 error
}

func (r *reader) loop(stop *atomic.Bool, reads *atomic.Int64, before []float32,
	predict func() ([]float32, error)) {
	for !stop.Load() {
		out, err := predict()
		r.predictions++
		reads.Add(1)
		switch {
		case errors.Is(err, StatusBusy):
			r.busy++
		case err != nil:
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
		case floatsEqual(out, before):
			r.matchedBefore++
		default:
			r.other = append(r.other, out)
		}
	}
}

// waitReads blocks until reads reaches n (or fails the run after a minute).
func waitReads(reads *atomic.Int64, n int64) error {
	deadline := time.Now().Add(time.Minute)
	for reads.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d reads after a minute", reads.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// checkReaders: no StatusBusy, no error, and every result the model before or the model
// after, bit for bit; some of each.
func checkReaders(t *testing.T, rs []*reader, after []float32) {
	t.Helper()
	total, old, fresh := 0, 0, 0
	for i, r := range rs {
		if r.busy != 0 || r.errors != 0 {
			t.Fatalf("reader %d: %d StatusBusy, %d errors (%v)", i, r.busy, r.errors, r.firstErr)
		}
		for _, out := range r.other {
			if !floatsEqual(out, after) {
				t.Fatalf("reader %d saw a result that is neither the model before nor after", i)
			}
		}
		total += r.predictions
		old += r.matchedBefore
		fresh += len(r.other)
	}
	if old == 0 || fresh == 0 {
		t.Fatalf("%d results of the old model, %d of the new: the reads did not span the publish", old, fresh)
	}
	t.Logf("%d predictions: %d old model, %d new, 0 busy, 0 torn", total, old, fresh)
}

// runUnderReaders runs unlearn while readers predict with predict on two goroutines. The
// run's first progress call waits until the readers have predicted during it; after the run
// they go on until they have seen the new model.
func runUnderReaders(t *testing.T, before []float32, predict func() ([]float32, error),
	unlearn func(ProgressFunc) error) []*reader {
	t.Helper()
	var stop atomic.Bool
	var reads atomic.Int64
	rs := []*reader{{}, {}}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func(r *reader) {
			defer wg.Done()
			r.loop(&stop, &reads, before, predict)
		}(r)
	}
	var once sync.Once
	err := unlearn(func(Progress) error {
		var err error
		once.Do(func() { err = waitReads(&reads, reads.Load()+20) })
		return err
	})
	if err == nil {
		err = waitReads(&reads, reads.Load()+20)
	}
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestInferDuringUnlearn: two goroutines predict on the model while it unlearns: none gets
// StatusBusy, every result is the model before or after bit for bit, and the unlearned
// weights equal those of the same run on an idle model.
func TestInferDuringUnlearn(t *testing.T) {
	d := newDigits(t, 3)
	m, w := newDigitsModel(t, 5)
	trainDigits(t, m, d, 3)
	const n = 16
	in := requests(t, d, n)
	before, err := m.Infer(in, n, OutputRaw)
	if err != nil {
		t.Fatal(err)
	}
	opts := liveOptions(40)
	rs := runUnderReaders(t, before,
		func() ([]float32, error) { return m.Infer(in, n, OutputRaw) },
		func(progress ProgressFunc) error {
			o := opts
			o.Progress = progress
			_, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &o)
			return err
		})
	after, err := m.Infer(in, n, OutputRaw)
	if err != nil {
		t.Fatal(err)
	}
	if floatsEqual(before, after) {
		t.Fatal("the run did not change the model")
	}
	checkReaders(t, rs, after)

	alone, aloneW := newDigitsModel(t, 5)
	trainDigits(t, alone, d, 3)
	if _, err := alone.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil {
		t.Fatal(err)
	}
	if !snapshotsEqual(aloneW.Snapshot(), w.Snapshot()) {
		t.Fatal("the run under load differs from the same run on an idle model")
	}
}

// TestPublishHook: the hook brackets the write (Begin, then End, on the writing call's
// goroutine; reads from inside it see the old weights at Begin and the new ones at End),
// false at Begin keeps the old weights with StatusCancelled, nil removes it, and a panic in
// it keeps the old weights and is re-raised by the writing call.
func TestPublishHook(t *testing.T) {
	d := newDigits(t, 3)
	m, w := newDigitsModel(t, 5)
	trainDigits(t, m, d, 3)
	const n = 8
	in := requests(t, d, n)
	before, _ := m.Infer(in, n, OutputRaw)

	var phases []PublishPhase
	var atBegin, atEnd []float32
	var hookErr error
	if err := m.SetPublishHook(func(p PublishPhase) bool {
		phases = append(phases, p)
		out, err := m.Infer(in, n, OutputRaw) // reads are allowed from the hook
		if err != nil {
			hookErr = err
		}
		if p == PublishPhaseBegin {
			atBegin = out
			// A writer from the hook is refused, not deadlocked.
			if err := m.InitWeights(1); !errors.Is(err, StatusBusy) {
				hookErr = fmt.Errorf("InitWeights from the hook: %v", err)
			}
		} else {
			atEnd = out
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	opts := liveOptions(5)
	if _, err := m.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	after, _ := m.Infer(in, n, OutputRaw)
	if len(phases) != 2 || phases[0] != PublishPhaseBegin || phases[1] != PublishPhaseEnd {
		t.Fatalf("phases %v", phases)
	}
	if !floatsEqual(atBegin, before) || !floatsEqual(atEnd, after) || floatsEqual(before, after) {
		t.Fatal("the hook does not bracket the write")
	}

	// Refusing at Begin keeps the old weights, for a run and for InitWeights.
	calls := 0
	if err := m.SetPublishHook(func(p PublishPhase) bool {
		calls++
		return p != PublishPhaseBegin
	}); err != nil {
		t.Fatal(err)
	}
	kept := w.Snapshot()
	_, err := m.Unlearn(nil, d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusCancelled)
	wantStatus(t, m.InitWeights(1), StatusCancelled)
	if calls != 2 || !snapshotsEqual(kept, w.Snapshot()) {
		t.Fatalf("a refusing hook: %d calls, weights kept: %v", calls, snapshotsEqual(kept, w.Snapshot()))
	}

	// A panic keeps the old weights and comes out of the writing call, not out of gradtau.
	if err := m.SetPublishHook(func(PublishPhase) bool { panic("hook panic") }); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "hook panic" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_ = m.InitWeights(1)
		t.Fatal("the panic was not re-raised")
	}()
	if !snapshotsEqual(kept, w.Snapshot()) {
		t.Fatal("a panicking hook let the write through")
	}

	// nil removes the hook: later publishes happen without it.
	if err := m.SetPublishHook(nil); err != nil {
		t.Fatal(err)
	}
	if err := m.InitWeights(1); err != nil || calls != 2 || snapshotsEqual(kept, w.Snapshot()) {
		t.Fatalf("after removing the hook: %v, %d calls", err, calls)
	}
}

// TestSharedBuffersHookProtectedReader: a reader handle bound to the same Buffers as the
// writer handle reads them directly; the writer's hook takes the host's lock around the
// publish, so the reader sees the old model or the new one, never a mix.
func TestSharedBuffersHookProtectedReader(t *testing.T) {
	d := newDigits(t, 3)
	writer, w := newDigitsModel(t, 5)
	trainDigits(t, writer, d, 3)
	readerModel, err := NewModel(DigitsMLPSpec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = readerModel.Close() })
	for _, name := range w.Names() {
		if err := readerModel.Bind(name, w.Buffer(name)); err != nil {
			t.Fatal(err)
		}
	}
	opts := liveOptions(20)
	// The model after, from an identical twin, so that the readers can be checked.
	twin, twinW := newDigitsModel(t, 5)
	trainDigits(t, twin, d, 3)
	if _, err := twin.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil {
		t.Fatal(err)
	}
	const n = 16
	in := requests(t, d, n)
	before, _ := readerModel.Infer(in, n, OutputRaw)

	var host sync.RWMutex // the host's lock around its engine's reads of the buffers
	begins, ends := 0, 0
	if err := writer.SetPublishHook(func(p PublishPhase) bool {
		if p == PublishPhaseBegin {
			host.Lock()
			begins++
		} else {
			ends++
			host.Unlock()
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	rs := runUnderReaders(t, before,
		func() ([]float32, error) {
			host.RLock()
			defer host.RUnlock()
			return readerModel.Infer(in, n, OutputRaw)
		},
		func(progress ProgressFunc) error {
			o := opts
			o.Progress = progress
			_, err := writer.Unlearn(context.Background(), d.forget, d.retain, d.val, &o)
			return err
		})
	after, _ := twin.Infer(in, n, OutputRaw)
	checkReaders(t, rs, after)
	if begins != 1 || ends != 1 {
		t.Fatalf("hook called %d/%d times", begins, ends)
	}
	if !snapshotsEqual(twinW.Snapshot(), w.Snapshot()) {
		t.Fatal("the published weights differ from the same run alone")
	}
}

// TestThreadCap: the cap is stored, refused when negative, and does not change inference
// or a run's result.
func TestThreadCap(t *testing.T) {
	d := newDigits(t, 3)
	a, aw := newDigitsModel(t, 5)
	b, bw := newDigitsModel(t, 5)
	trainDigits(t, a, d, 3)
	trainDigits(t, b, d, 3)
	if b.Threads() != 0 {
		t.Fatalf("default cap %d", b.Threads())
	}
	wantStatus(t, b.SetThreads(-1), StatusInvalidArgument)
	if err := b.SetThreads(1); err != nil || b.Threads() != 1 {
		t.Fatalf("SetThreads(1): %v, cap %d", err, b.Threads())
	}
	const n = 64
	in := requests(t, d, n)
	ra, _ := a.Infer(in, n, OutputRaw)
	rb, err := b.Infer(in, n, OutputRaw)
	if err != nil || !floatsEqual(ra, rb) {
		t.Fatalf("capped inference differs: %v", err)
	}
	opts := liveOptions(10)
	for _, m := range []*Model{a, b} {
		if _, err := m.Unlearn(nil, d.forget, d.retain, d.val, &opts); err != nil {
			t.Fatal(err)
		}
	}
	if !snapshotsEqual(aw.Snapshot(), bw.Snapshot()) {
		t.Fatal("the capped run differs")
	}
}

// TestInferWithoutLabels: Infer and Classify agree with Predict, probabilities sum to 1,
// empty batches are fine, and bad arguments are errors that write nothing.
func TestInferWithoutLabels(t *testing.T) {
	d := newDigits(t, 3)
	m, _ := newDigitsModel(t, 5)
	trainDigits(t, m, d, 2)
	n := d.test.Len()
	in, err := d.test.Inputs()
	if err != nil || len(in) != n*64 {
		t.Fatalf("Inputs: %d floats, %v", len(in), err)
	}
	logits, err := m.Infer(in, n, OutputRaw)
	if err != nil {
		t.Fatal(err)
	}
	viaSet, _ := m.Predict(d.test)
	if !floatsEqual(logits, viaSet) {
		t.Fatal("Infer and Predict disagree")
	}
	probs, err := m.Infer(in, n, OutputProbabilities)
	if err != nil {
		t.Fatal(err)
	}
	classes, err := m.Classify(in, n)
	if err != nil || len(classes) != n {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		sum := 0.0
		for _, p := range probs[i*10 : i*10+10] {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-5 || int(classes[i]) != argmax(logits[i*10:i*10+10]) {
			t.Fatalf("sample %d: probabilities sum to %v, class %d", i, sum, classes[i])
		}
	}
	// Empty batches.
	if out, err := m.Infer(nil, 0, OutputRaw); err != nil || out == nil || len(out) != 0 {
		t.Fatalf("empty Infer: %v, %v", out, err)
	}
	if out, err := m.Classify(nil, 0); err != nil || out == nil || len(out) != 0 {
		t.Fatalf("empty Classify: %v, %v", out, err)
	}
	// Bad arguments.
	_, err = m.Infer(in[:len(in)-1], n, OutputRaw)
	wantStatus(t, err, StatusShape, "inputs_len")
	_, err = m.Infer(in, n, Output(7))
	wantStatus(t, err, StatusInvalidArgument)
	_, err = m.Infer(in, -1, OutputRaw)
	wantStatus(t, err, StatusInvalidArgument, "negative")
	_, err = m.Classify(in, -1)
	wantStatus(t, err, StatusInvalidArgument, "negative")
	_, err = m.Infer(nil, 2, OutputRaw) // a nil slice is an empty one, too short for 2 samples
	wantStatus(t, err, StatusShape, "inputs_len")
	bad := append([]float32(nil), in[:64]...)
	bad[3] = float32(math.NaN())
	_, err = m.Classify(bad, 1)
	wantStatus(t, err, StatusNonFinite)
	// The inputs of a set survive a round trip through a new set and a subset.
	labels, _ := d.test.Labels()
	copySet, err := NewClassDataset(in, []int{n, 64}, labels)
	if err != nil {
		t.Fatal(err)
	}
	defer copySet.Close()
	sub, err := copySet.Subset([]int{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	empty, err := copySet.Subset(nil)
	if err != nil {
		t.Fatalf("empty subset: %v", err)
	}
	defer empty.Close()
	if in, err := empty.Inputs(); err != nil || in == nil || len(in) != 0 {
		t.Fatalf("inputs of an empty set: %v, %v", in, err)
	}
	subIn, err := sub.Inputs()
	if err != nil || !floatsEqual(subIn, append(append([]float32{}, in[128:192]...), in[:64]...)) {
		t.Fatalf("subset inputs: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(in, n, OutputRaw); !errors.Is(err, ErrClosed) {
		t.Fatalf("Infer after Close: %v", err)
	}
	if _, err := m.Classify(in, n); !errors.Is(err, ErrClosed) {
		t.Fatalf("Classify after Close: %v", err)
	}
	if _, err := LoadDataset(m, "x.npy", "y.npy"); !errors.Is(err, ErrClosed) {
		t.Fatalf("LoadDataset with a closed model: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Inputs(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Inputs after Close: %v", err)
	}
	if m.Threads() != 0 || !errors.Is(m.SetThreads(1), ErrClosed) || !errors.Is(m.SetPublishHook(nil), ErrClosed) {
		t.Fatal("the thread cap or the hook of a closed model")
	}
}

// writeNpy writes a little-endian .npy file of dtype descr ("<f4", "<i4") and shape.
func writeNpy(t *testing.T, path, descr string, shape []int, data any) {
	t.Helper()
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = fmt.Sprint(s)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	// Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64
	// and ended by a newline.
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _ = f.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(f, binary.LittleEndian, uint16(len(header)))
	_, _ = f.WriteString(header)
	if err := binary.Write(f, binary.LittleEndian, data); err != nil {
		t.Fatal(err)
	}
}

// TestLoadDataset: a set read from .npy files equals the arrays written; a missing file is
// StatusIO naming it; Fashion-MNIST's IDX files load when the Debian package is installed.
func TestLoadDataset(t *testing.T) {
	d := newDigits(t, 3)
	m, _ := newDigitsModel(t, 5)
	in, _ := d.test.Inputs()
	labels, _ := d.test.Labels()
	dir := t.TempDir()
	x, y := filepath.Join(dir, "x.npy"), filepath.Join(dir, "y.npy")
	writeNpy(t, x, "<f4", []int{len(labels), 64}, in)
	writeNpy(t, y, "<i4", []int{len(labels)}, labels)
	loaded, err := LoadDataset(m, x, y)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	gotIn, err := loaded.Inputs()
	if err != nil || !floatsEqual(gotIn, in) {
		t.Fatalf("loaded inputs: %v", err)
	}
	gotLabels, _ := loaded.Labels()
	if fmt.Sprint(gotLabels) != fmt.Sprint(labels) {
		t.Fatal("loaded labels differ")
	}
	missing := filepath.Join(dir, "missing.npy")
	_, err = LoadDataset(m, missing, y)
	wantStatus(t, err, StatusIO, missing)
	_, err = LoadDataset(nil, x, y)
	wantStatus(t, err, StatusNullPointer)

	const fashion = "/usr/share/datasets/fashion-mnist/"
	if _, err := os.Stat(fashion + "t10k-images-idx3-ubyte.gz"); err != nil {
		t.Logf("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): IDX part skipped")
		return
	}
	spec, err := os.ReadFile("../../data/specs/fashion_mlp.json")
	if err != nil {
		t.Fatal(err)
	}
	fm, err := NewModel(string(spec))
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	set, err := LoadDataset(fm, fashion+"t10k-images-idx3-ubyte.gz", fashion+"t10k-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	first, _ := set.Labels()
	if set.Len() != 10000 || fmt.Sprint(first[:4]) != "[9 2 1 1]" {
		t.Fatalf("Fashion-MNIST t10k: %d samples, labels %v", set.Len(), first[:4])
	}
	if in, err := set.Inputs(); err != nil || len(in) != 10000*28*28 {
		t.Fatalf("Fashion-MNIST inputs: %d floats, %v", len(in), err)
	}
}
