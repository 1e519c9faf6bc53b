// Command gradtau-consumer removes class 3 from a digits model with ∇τ, the way a Go service
// would use gradtau from its own module.
package main

import (
	"context"
	"fmt"
	"os"

	gradtau "github.com/gradtau/gradtau/bindings/go"
)

// removeClass trains a digits MLP on weights the program owns, unlearns class 3 with ∇τ and
// returns the audits before and after.
func removeClass(ctx context.Context) (before, after gradtau.AuditRow, rep gradtau.Report, err error) {
	m, err := gradtau.NewModel(gradtau.DigitsMLPSpec())
	if err != nil {
		return
	}
	defer m.Close()
	w, err := m.NewWeights()
	if err != nil {
		return
	}
	defer w.Close()
	if err = m.InitWeights(1); err != nil {
		return
	}
	train, val, test, err := gradtau.DigitsSplit(3)
	if err != nil {
		return
	}
	defer train.Close()
	defer val.Close()
	defer test.Close()
	labels, err := train.Labels()
	if err != nil {
		return
	}
	var forgetIdx, retainIdx []int
	for i, l := range labels {
		if l == 3 {
			forgetIdx = append(forgetIdx, i)
		} else {
			retainIdx = append(retainIdx, i)
		}
	}
	forget, err := train.Subset(forgetIdx)
	if err != nil {
		return
	}
	defer forget.Close()
	retain, err := train.Subset(retainIdx)
	if err != nil {
		return
	}
	defer retain.Close()

	topts, err := gradtau.DefaultTrainOptions()
	if err != nil {
		return
	}
	topts.Epochs, topts.Seed = 25, 1
	if _, err = m.Train(ctx, train, &topts); err != nil {
		return
	}
	if before, err = m.Audit(retain, forget, test, 0); err != nil {
		return
	}
	uopts, err := gradtau.DefaultUnlearnOptions(gradtau.MethodNablaTau)
	if err != nil {
		return
	}
	uopts.Seed = 3
	if rep, err = m.Unlearn(ctx, forget, retain, val, &uopts); err != nil {
		return
	}
	after, err = m.Audit(retain, forget, test, 0)
	return
}

// check says what is wrong with the audits, or nil when class 3 is gone and the rest kept.
func check(before, after gradtau.AuditRow, rep gradtau.Report) error {
	if before.ForgetAccuracy < 0.95 || before.RetainAccuracy < 0.95 {
		return fmt.Errorf("original model too weak: %+v", before)
	}
	if after.ForgetAccuracy > 0.2 || after.RetainAccuracy < 0.9 || rep.Steps == 0 {
		return fmt.Errorf("class not removed or the rest damaged: %+v after %d steps", after, rep.Steps)
	}
	return nil
}

func main() {
	before, after, rep, err := removeClass(context.Background())
	if err == nil {
		err = check(before, after, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gradtau-consumer:", err)
		os.Exit(1)
	}
	fmt.Printf("gradtau %s (Go): %s, %d steps; forget accuracy %.3f -> %.3f, retain %.3f -> %.3f, MIA (loss) %.3f\n",
		gradtau.Version(), rep.Method, rep.Steps, before.ForgetAccuracy, after.ForgetAccuracy,
		before.RetainAccuracy, after.RetainAccuracy, after.MIALoss)
}
