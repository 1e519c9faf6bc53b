package gradtau

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

const onnxFixtures = "../../tests/fixtures/onnx/"

// readNpyF32 reads a little-endian float32 .npy file (format version 1, C order) and returns
// its shape and values. Only what the fixtures use; anything else fails the test.
func readNpyF32(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 10 || string(raw[:6]) != "\x93NUMPY" || raw[6] != 1 {
		t.Fatalf("%s: not a version 1 .npy file", path)
	}
	headerLen := int(binary.LittleEndian.Uint16(raw[8:10]))
	if 10+headerLen > len(raw) {
		t.Fatalf("%s: header length %d runs past the file", path, headerLen)
	}
	header := string(raw[10 : 10+headerLen])
	if !strings.Contains(header, "'descr': '<f4'") || !strings.Contains(header, "'fortran_order': False") {
		t.Fatalf("%s: not C-order little-endian float32: %s", path, header)
	}
	open, end := strings.Index(header, "'shape': ("), -1
	if open >= 0 {
		open += len("'shape': (")
		end = strings.Index(header[open:], ")")
	}
	if end < 0 {
		t.Fatalf("%s: no shape in %s", path, header)
	}
	var shape []int
	numel := 1
	for _, f := range strings.Split(header[open:open+end], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d := 0
		for _, c := range f {
			if c < '0' || c > '9' {
				t.Fatalf("%s: bad shape %q", path, header[open:open+end])
			}
			d = d*10 + int(c-'0')
		}
		shape = append(shape, d)
		numel *= d
	}
	data := raw[10+headerLen:]
	if len(data) != 4*numel {
		t.Fatalf("%s: %d data bytes for shape %v", path, len(data), shape)
	}
	out := make([]float32, numel)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return shape, out
}

// onnxModel compiles the bytes with fresh bound buffers filled from the file's initializers.
func onnxModel(t *testing.T, onnx []byte) (*Model, *Weights) {
	t.Helper()
	m, err := NewModelFromONNX(onnx, "cross_entropy")
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.NewWeights()
	if err != nil {
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
	if err := m.LoadONNXWeights(); err != nil {
		t.Fatal(err)
	}
	return m, w
}

// TestONNXRoundTrip: the PyTorch MLP export gives ONNX Runtime's outputs, and a weight changed
// in the host's buffer survives ToONNX and a reload.
func TestONNXRoundTrip(t *testing.T) {
	onnx, err := os.ReadFile(onnxFixtures + "mlp.torchscript.onnx")
	if err != nil {
		t.Fatal(err)
	}
	m, w := onnxModel(t, onnx)
	if _, err := m.ParamIndex("1.weight"); err != nil {
		t.Fatalf("the ONNX initializer names are not the parameter names: %v", err)
	}
	inShape, inputs := readNpyF32(t, onnxFixtures+"mlp.input.npy")
	wantShape, want := readNpyF32(t, onnxFixtures+"mlp.torchscript.ort.npy")
	if inShape[0] != 6 || len(wantShape) != 2 || wantShape[0] != 6 || wantShape[1] != 10 {
		t.Fatalf("fixture shapes %v %v", inShape, wantShape)
	}
	got, err := m.Infer(inputs, inShape[0], OutputRaw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d outputs, ONNX Runtime has %d", len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("output %d: %v, ONNX Runtime %v", i, got[i], want[i])
		}
	}

	before := w.Snapshot()
	changed := w.Buffer("1.weight").Float32s()
	changed[7] += 0.5
	saved, err := m.ToONNX()
	if err != nil {
		t.Fatal(err)
	}
	_, w2 := onnxModel(t, saved)
	after := w2.Snapshot()
	before["1.weight"][7] += 0.5
	if !snapshotsEqual(before, after) {
		t.Fatal("the reloaded ONNX file does not hold the weights it was saved with, the changed one included")
	}
}

func TestONNXErrors(t *testing.T) {
	_, err := NewModelFromONNX([]byte("definitely not protobuf"), "cross_entropy")
	wantStatus(t, err, StatusSpec)
	_, err = NewModelFromONNX(nil, "cross_entropy")
	if err == nil {
		t.Fatal("an empty ONNX file compiled")
	}
	onnx, err := os.ReadFile(onnxFixtures + "mlp.torchscript.onnx")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewModelFromONNX(onnx, "hinge")
	wantStatus(t, err, StatusInvalidArgument)

	// A JSON-spec model has no ONNX file behind it.
	m, _ := newDigitsModel(t, 1)
	wantStatus(t, m.LoadONNXWeights(), StatusInvalidArgument)
	_, err = m.ToONNX()
	wantStatus(t, err, StatusInvalidArgument)

	// Unbound parameters.
	bare, err := NewModelFromONNX(onnx, "cross_entropy")
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	wantStatus(t, bare.LoadONNXWeights(), StatusBinding)
	_, err = bare.ToONNX()
	wantStatus(t, err, StatusBinding)
	if err := bare.Close(); err != nil || !errors.Is(bare.LoadONNXWeights(), ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestStopReason: a paper-mode run cut by MaxSteps says so; a default adaptive run ends
// with a reason the header defines, whose name is its own.
func TestStopReason(t *testing.T) {
	d := newDigits(t, 4)
	m, _ := newDigitsModel(t, 3)
	opts := liveOptions(3)
	opts.MaxSteps = 1 // fewer than the planned steps (one per forget-epoch here at least)
	rep, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StopReason != StopReasonMaxSteps || !rep.Truncated || rep.StopReason.String() != "GRADTAU_STOP_MAX_STEPS" {
		t.Fatalf("paper run with MaxSteps: %+v (%v)", rep, rep.StopReason)
	}

	trainDigits(t, m, d, 3)
	n := d.train.Len()
	var random, rest []int
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			random = append(random, i)
		} else {
			rest = append(rest, i)
		}
	}
	forget, err := d.train.Subset(random)
	if err != nil {
		t.Fatal(err)
	}
	defer forget.Close()
	retain, err := d.train.Subset(rest)
	if err != nil {
		t.Fatal(err)
	}
	defer retain.Close()
	defaults, err := DefaultUnlearnOptions(MethodNablaTau)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = m.Unlearn(context.Background(), forget, retain, d.val, &defaults)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StopReason != StopReasonForgotten && rep.StopReason != StopReasonBudget {
		t.Fatalf("default adaptive run stopped with %v: %+v", rep.StopReason, rep)
	}
	named := 0
	for _, r := range allStopReasons {
		if r.String() == rep.StopReason.String() {
			named++
			if r != rep.StopReason {
				t.Fatalf("%v and %v share the name %q", r, rep.StopReason, r.String())
			}
		}
	}
	if named != 1 || !strings.HasPrefix(rep.StopReason.String(), "GRADTAU_STOP_") {
		t.Fatalf("stop reason %d is named %q", rep.StopReason, rep.StopReason.String())
	}
	if StopReason(99).String() != "GRADTAU_STOP_UNKNOWN" {
		t.Fatal(StopReason(99).String())
	}
}

// TestMemoryLimit: a budget far below any pass refuses the computing calls with
// StatusResourceLimit and leaves the buffers as they were; 0 restores the default.
func TestMemoryLimit(t *testing.T) {
	d := newDigits(t, 2)
	m, w := newDigitsModel(t, 5)
	inputs := requests(t, d, 4)
	before := w.Snapshot()
	if err := m.SetMemoryLimit(1 << 10); err != nil {
		t.Fatal(err)
	}
	_, err := m.Infer(inputs, 4, OutputRaw)
	wantStatus(t, err, StatusResourceLimit)
	_, err = m.Predict(d.test)
	wantStatus(t, err, StatusResourceLimit)
	opts := liveOptions(1)
	_, err = m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts)
	wantStatus(t, err, StatusResourceLimit)
	if !snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("a refused call changed the bound buffers")
	}
	if err := m.SetMemoryLimit(0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(inputs, 4, OutputRaw); err != nil {
		t.Fatal(err)
	}
	opts.MaxSteps = 1
	if _, err := m.Unlearn(context.Background(), d.forget, d.retain, d.val, &opts); err != nil {
		t.Fatal(err)
	}
	if snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("the run after restoring the default changed nothing")
	}
}

// TestDatasetInputsShape: Inputs sizes its result from the library's sample shape, for
// every way a set is made.
func TestDatasetInputsShape(t *testing.T) {
	x := make([]float32, 3*2*5)
	for i := range x {
		x[i] = float32(i)
	}
	set, err := NewValueDataset(x, []int{3, 2, 5}, make([]float32, 3), []int{3, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	sub, err := set.Subset([]int{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if shape, err := sub.SampleShape(); err != nil || len(shape) != 2 || shape[0] != 2 || shape[1] != 5 {
		t.Fatalf("SampleShape %v %v", shape, err)
	}
	got, err := sub.Inputs()
	if err != nil {
		t.Fatal(err)
	}
	if !floatsEqual(got, append(append([]float32{}, x[20:30]...), x[0:10]...)) {
		t.Fatalf("subset inputs %v", got)
	}
}

// TestONNXGuards: LoadONNXWeights is a writer (StatusBusy during a run on the model) and
// ToONNX a read (allowed during a run, and it sees the weights from before it).
func TestONNXGuards(t *testing.T) {
	onnx, err := os.ReadFile(onnxFixtures + "mlp.torchscript.onnx")
	if err != nil {
		t.Fatal(err)
	}
	m, w := onnxModel(t, onnx)
	shape, inputs := readNpyF32(t, onnxFixtures+"mlp.input.npy")
	per := len(inputs) / shape[0]
	sets := make([]*Dataset, 3)
	for i := range sets {
		sets[i], err = NewClassDataset(inputs[2*i*per:2*(i+1)*per], append([]int{2}, shape[1:]...), []int32{int32(i), int32(i + 3)})
		if err != nil {
			t.Fatal(err)
		}
		defer sets[i].Close()
	}
	before := w.Snapshot()
	var loadErr, saveErr error
	var saved []byte
	opts := liveOptions(2)
	opts.MaxSteps = 1
	opts.Progress = func(Progress) error {
		loadErr = m.LoadONNXWeights()
		saved, saveErr = m.ToONNX()
		return nil
	}
	if _, err := m.Unlearn(context.Background(), sets[0], sets[1], sets[2], &opts); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, loadErr, StatusBusy)
	if saveErr != nil {
		t.Fatalf("ToONNX during a run: %v", saveErr)
	}
	if snapshotsEqual(before, w.Snapshot()) {
		t.Fatal("the run changed nothing")
	}
	_, w2 := onnxModel(t, saved)
	if !snapshotsEqual(before, w2.Snapshot()) {
		t.Fatal("ToONNX during the run did not see the weights from before it")
	}
}
