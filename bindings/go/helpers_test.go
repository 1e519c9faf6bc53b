package gradtau

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// digits is the class-removal setup of tests/c/common.h: forget = every training image of
// forgetClass, retain = the rest.
type digits struct {
	train, val, test, forget, retain *Dataset
}

func newDigits(t *testing.T, forgetClass int32) *digits {
	t.Helper()
	train, val, test, err := DigitsSplit(0)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := train.Labels()
	if err != nil {
		t.Fatal(err)
	}
	var forgetIdx, retainIdx []int
	for i, l := range labels {
		if l == forgetClass {
			forgetIdx = append(forgetIdx, i)
		} else {
			retainIdx = append(retainIdx, i)
		}
	}
	forget, err := train.Subset(forgetIdx)
	if err != nil {
		t.Fatal(err)
	}
	retain, err := train.Subset(retainIdx)
	if err != nil {
		t.Fatal(err)
	}
	d := &digits{train, val, test, forget, retain}
	t.Cleanup(func() {
		for _, s := range []*Dataset{d.train, d.val, d.test, d.forget, d.retain} {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	return d
}

// newDigitsModel is the digits MLP with freshly allocated, bound and seeded weights.
func newDigitsModel(t *testing.T, seed uint64) (*Model, *Weights) {
	t.Helper()
	m, err := NewModel(DigitsMLPSpec())
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.NewWeights()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitWeights(seed); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return m, w
}

// trainDigits over-fits the model on train, as the original model of an unlearning run.
func trainDigits(t *testing.T, m *Model, d *digits, epochs int) {
	t.Helper()
	opts, err := DefaultTrainOptions()
	if err != nil {
		t.Fatal(err)
	}
	opts.Epochs, opts.Seed = epochs, 1
	if _, err := m.Train(nil, d.train, &opts); err != nil {
		t.Fatal(err)
	}
}

func snapshotsEqual(a, b map[string][]float32) bool {
	if len(a) != len(b) {
		return false
	}
	for name, va := range a {
		vb, ok := b[name]
		if !ok || len(va) != len(vb) {
			return false
		}
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				return false
			}
		}
	}
	return true
}

func allFinite(s map[string][]float32) bool {
	for _, v := range s {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return false
			}
		}
	}
	return true
}

// wantStatus checks err is an *Error with status want whose message mentions every needle.
func wantStatus(t *testing.T, err error, want Status, needles ...string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want a *gradtau.Error with %v", err, want)
	}
	if e.Status != want || !errors.Is(err, want) {
		t.Fatalf("got %v, want status %v", err, want)
	}
	for _, n := range needles {
		if !strings.Contains(e.Message, n) {
			t.Fatalf("message %q does not mention %q", e.Message, n)
		}
	}
	return e
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func crossEntropy(logits []float32, label int) float64 {
	top := float64(logits[argmax(logits)])
	sum := 0.0
	for _, x := range logits {
		sum += math.Exp(float64(x) - top)
	}
	return top + math.Log(sum) - float64(logits[label])
}

// floatsEqual compares bit for bit (a NaN equals itself, 0 and -0 differ).
func floatsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
