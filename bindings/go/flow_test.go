package gradtau

import (
	"context"
	"fmt"
	"math"
	"testing"
)

func TestVersion(t *testing.T) {
	if got := ABIVersion(); got != HeaderABIVersion {
		t.Fatalf("ABI %d, header %d", got, HeaderABIVersion)
	}
	v := Version()
	var major, minor, patch int
	if _, err := fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatalf("version %q: %v", v, err)
	}
}

func TestModelQueries(t *testing.T) {
	m, w := newDigitsModel(t, 1)
	params, err := m.Params()
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 6 {
		t.Fatalf("%d params", len(params))
	}
	p0 := params[0]
	if p0.Name != "0.weight" || len(p0.Shape) != 2 || p0.Shape[0] != 128 || p0.Shape[1] != 64 ||
		p0.Numel != 128*64 || !p0.Trainable {
		t.Fatalf("param 0: %+v", p0)
	}
	if idx, err := m.ParamIndex("4.bias"); err != nil || idx != 5 {
		t.Fatalf("ParamIndex(4.bias) = %d, %v", idx, err)
	}
	if in, err := m.InputShape(); err != nil || len(in) != 1 || in[0] != 64 {
		t.Fatalf("input shape %v, %v", in, err)
	}
	if out, err := m.OutputShape(); err != nil || len(out) != 1 || out[0] != 10 {
		t.Fatalf("output shape %v, %v", out, err)
	}
	if loss, err := m.Loss(); err != nil || loss != "cross_entropy" {
		t.Fatalf("loss %q, %v", loss, err)
	}
	names := w.Names()
	for i, p := range params {
		if names[i] != p.Name || len(w.Get(p.Name)) != p.Numel {
			t.Fatalf("weights %q: %d floats, param %+v", names[i], len(w.Get(p.Name)), p)
		}
	}
	// InitWeights wrote through the bound C memory, so the host sees it in place.
	nonzero := 0
	for _, x := range w.Get("0.weight") {
		if x != 0 {
			nonzero++
		}
	}
	if nonzero < 128*64/2 {
		t.Fatalf("only %d non-zero initial weights", nonzero)
	}
}

// TestFlow is tests/c/test_flow.c in Go: train an original model, audit, remove a class with
// ∇τ, audit again.
func TestFlow(t *testing.T) {
	d := newDigits(t, 3)
	if d.forget.Len() < 100 || d.forget.Len()+d.retain.Len() != d.train.Len() {
		t.Fatalf("forget %d retain %d train %d", d.forget.Len(), d.retain.Len(), d.train.Len())
	}
	m, w := newDigitsModel(t, 1)

	topts, err := DefaultTrainOptions()
	if err != nil {
		t.Fatal(err)
	}
	if topts.Optimizer != OptimizerAdamW || topts.Epochs != 10 || topts.BatchSize != 64 {
		t.Fatalf("train defaults %+v", topts)
	}
	topts.Epochs, topts.Seed = 25, 1
	trainSteps := 0
	topts.Progress = func(p Progress) error {
		if p.Step != trainSteps || p.Step >= p.TotalSteps || p.Method != "train" ||
			math.IsNaN(float64(p.RetainLoss)) {
			return fmt.Errorf("unexpected progress %+v after %d calls", p, trainSteps)
		}
		trainSteps++
		return nil
	}
	rep, err := m.Train(context.Background(), d.train, &topts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Method != "train" || rep.Steps != trainSteps || trainSteps == 0 {
		t.Fatalf("train report %+v after %d callbacks", rep, trainSteps)
	}
	trained := w.Snapshot()
	if !allFinite(trained) {
		t.Fatal("non-finite weights after training")
	}

	before, err := m.Audit(d.retain, d.forget, d.test, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before: %+v", before)
	if before.RetainAccuracy < 0.95 || before.TestAccuracy < 0.9 || before.ForgetAccuracy < 0.95 {
		t.Fatalf("original model too weak: %+v", before)
	}
	// The task's metric is named and agrees with the accuracies; every attack is there.
	if before.Metric.Metric != MetricAccuracy || before.Metric.Metric.String() != "accuracy" ||
		before.Metric.Retain != before.RetainAccuracy || before.Metric.Test != before.TestAccuracy ||
		before.Secondary != nil || before.MIALoss != before.Paper.Accuracy {
		t.Fatalf("audit metric %+v", before)
	}
	if auc := before.Threshold.AUC; auc < 0 || auc > 1 || before.Strongest < math.Abs(auc-0.5) ||
		before.AttackSamples == 0 || math.IsNaN(before.LogLoss.Accuracy) {
		t.Fatalf("audit attacks %+v", before)
	}
	if MetricMAE.String() != "mae" || Metric(99).String() != "unknown" {
		t.Fatal("metric names")
	}

	uopts, err := DefaultUnlearnOptions(MethodNablaTau)
	if err != nil {
		t.Fatal(err)
	}
	if uopts.Method != MethodNablaTau || uopts.Mode != ModeAdaptive || !math.IsNaN(float64(uopts.Alpha0)) ||
		!math.IsNaN(float64(uopts.AlphaMax)) || !math.IsNaN(float64(uopts.LR)) {
		t.Fatalf("unlearn defaults %+v", uopts)
	}
	uopts.Seed, uopts.Device = 3, "cpu"
	steps := 0
	uopts.Progress = func(p Progress) error {
		if p.Method != "nabla_tau" || p.Step != steps {
			return fmt.Errorf("unexpected progress %+v", p)
		}
		steps++
		return nil
	}
	rep, err = m.Unlearn(context.Background(), d.forget, d.retain, d.val, &uopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unlearn: %+v", rep)
	if rep.Method != "nabla_tau" || rep.Steps != steps || steps == 0 || rep.Epochs == 0 ||
		rep.Seconds < 0 || rep.Truncated || rep.LR < 1e-3 || rep.LR > 3e-3 {
		t.Fatalf("unlearn report %+v after %d callbacks", rep, steps)
	}
	unlearned := w.Snapshot()
	if snapshotsEqual(trained, unlearned) || !allFinite(unlearned) {
		t.Fatal("the host's buffers do not hold new finite weights")
	}

	after, err := m.Audit(d.retain, d.forget, d.test, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after:  %+v", after)
	if after.ForgetAccuracy > 0.2 || after.RetainAccuracy < 0.9 {
		t.Fatalf("class not removed or retain damaged: %+v", after)
	}

	// Predict's arg-max agrees with the audit's test accuracy (same weights, same data).
	logits, err := m.Predict(d.test)
	if err != nil {
		t.Fatal(err)
	}
	testLabels, err := d.test.Labels()
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != len(testLabels)*10 {
		t.Fatalf("%d outputs for %d samples", len(logits), len(testLabels))
	}
	correct := 0
	for i, l := range testLabels {
		if argmax(logits[i*10:(i+1)*10]) == int(l) {
			correct++
		}
	}
	if acc := float64(correct) / float64(len(testLabels)); math.Abs(acc-after.TestAccuracy) > 1e-9 {
		t.Fatalf("Predict accuracy %v, audit %v", acc, after.TestAccuracy)
	}

	// Losses on the forget set: one finite non-negative value per sample, equal to the
	// cross-entropy of Predict's logits.
	losses, err := m.Losses(d.forget)
	if err != nil {
		t.Fatal(err)
	}
	forgetLabels, _ := d.forget.Labels()
	forgetLogits, err := m.Predict(d.forget)
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != d.forget.Len() || len(forgetLogits) != 10*len(losses) {
		t.Fatalf("%d losses, %d logits for %d samples", len(losses), len(forgetLogits), d.forget.Len())
	}
	for i, l := range losses {
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) || l < 0 {
			t.Fatalf("loss %d is %v", i, l)
		}
		ce := crossEntropy(forgetLogits[i*10:(i+1)*10], int(forgetLabels[i]))
		if math.Abs(ce-float64(l)) > 1e-4*(1+ce) {
			t.Fatalf("loss %d is %v, cross-entropy of the logits %v", i, l, ce)
		}
	}

	// Auditing and inference read the buffers and never write them; auditing is
	// deterministic in its seed.
	again, err := m.Audit(d.retain, d.forget, d.test, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again != after || !snapshotsEqual(unlearned, w.Snapshot()) {
		t.Fatalf("audit changed something: %+v vs %+v", again, after)
	}

	// A baseline through the same entry point, without a callback.
	nopts, err := DefaultUnlearnOptions(MethodNegGradPlus)
	if err != nil {
		t.Fatal(err)
	}
	if nopts.Epochs != 3 || nopts.BatchSize != 256 {
		t.Fatalf("neggrad+ defaults %+v", nopts)
	}
	nopts.Epochs = 1
	if rep, err = m.Unlearn(nil, d.forget, d.retain, d.val, &nopts); err != nil {
		t.Fatal(err)
	}
	if rep.Method != "neggrad_plus" || snapshotsEqual(unlearned, w.Snapshot()) {
		t.Fatalf("neggrad+ did not run: %+v", rep)
	}
}

// TestMaxSteps covers Report.Truncated and nil options (∇τ defaults).
func TestMaxSteps(t *testing.T) {
	d := newDigits(t, 5)
	m, _ := newDigitsModel(t, 2)
	opts, err := DefaultUnlearnOptions(MethodNablaTau)
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxSteps = 3
	rep, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Steps != 3 || !rep.Truncated {
		t.Fatalf("report %+v", rep)
	}
}

func TestValueDataset(t *testing.T) {
	x := make([]float32, 6*4)
	y := make([]float32, 6*2)
	d, err := NewValueDataset(x, []int{6, 4}, y, []int{6, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Len() != 6 {
		t.Fatalf("len %d", d.Len())
	}
	_, err = d.Labels()
	wantStatus(t, err, StatusInvalidArgument)
	_, err = NewValueDataset(x, []int{6, 4}, y, []int{4, 3})
	wantStatus(t, err, StatusShape)
}

// TestEmptyBatch: an empty data set (the C header allows NULL with length 0) gives empty
// results, not StatusNullPointer.
func TestEmptyBatch(t *testing.T) {
	d := newDigits(t, 3)
	m, _ := newDigitsModel(t, 1)
	empty, err := d.train.Subset(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	built, err := NewClassDataset(nil, []int{0, 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	for _, set := range []*Dataset{empty, built} {
		if set.Len() != 0 {
			t.Fatalf("Len %d", set.Len())
		}
		labels, err := set.Labels()
		if err != nil || len(labels) != 0 {
			t.Fatalf("Labels: %v %v", labels, err)
		}
		out, err := m.Predict(set)
		if err != nil || len(out) != 0 {
			t.Fatalf("Predict: %v %v", out, err)
		}
		out, err = m.Losses(set)
		if err != nil || len(out) != 0 {
			t.Fatalf("Losses: %v %v", out, err)
		}
	}
}
