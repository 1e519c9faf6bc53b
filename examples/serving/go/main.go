// Command gradtau-serving is a net/http inference service that keeps answering while its
// model unlearns (the protocol is in examples/serving/README.md). It is written the way a
// user of the Go package would write it: the public API of github.com/gradtau/gradtau/bindings/go
// and the standard library only.
//
// One *gradtau.Model serves every request goroutine: predictions are gradtau reads and run
// side by side, also while POST /unlearn runs ∇τ on the same model on its own request
// goroutine; the new weights are published atomically when the run ends. The service also
// reads the weight buffers itself (GET /weights_hash), under its own lock, which the
// model's publish hook takes around every publish.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gradtau "github.com/gradtau/gradtau/bindings/go"
)

type config struct {
	port       int
	data       string
	spec       string
	runThreads int
}

func parseFlags() config {
	var c config
	flag.IntVar(&c.port, "port", 0, "TCP port on 127.0.0.1 (required)")
	flag.StringVar(&c.data, "data", "/usr/share/datasets/fashion-mnist", "directory of the Fashion-MNIST IDX files")
	flag.StringVar(&c.spec, "spec", "data/specs/fashion_mlp.json", "the model spec (JSON)")
	flag.IntVar(&c.runThreads, "run-threads", 1, "the model's thread cap (0: every core)")
	flag.Parse()
	if c.port <= 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	return c
}

// service is the model, its weights (C memory lent to gradtau) and the data of the protocol.
type service struct {
	model   *gradtau.Model
	weights *gradtau.Weights
	// buffers guards the service's own reads of the weight buffers against a publish: the
	// publish hook holds it for writing from PublishPhaseBegin to PublishPhaseEnd.
	buffers sync.RWMutex

	// While a run is in progress, predictions compute on the cores the run does not use:
	// `computing` admits that many at a time, so the run keeps the core it was given.
	running   atomic.Bool
	computing chan struct{}

	forget, retain, val *gradtau.Dataset
	// requests holds the inputs of every t10k image, row-major; features per image.
	requests []float32
	testLen  int
	features int
	classes  int
}

// indices returns the samples i (in [from, to)) for which keep(i) holds.
func indices(from, to int, keep func(int) bool) []int {
	var out []int
	for i := from; i < to; i++ {
		if keep(i) {
			out = append(out, i)
		}
	}
	return out
}

func all(int) bool { return true }

func newService(c config) (*service, error) {
	spec, err := os.ReadFile(c.spec)
	if err != nil {
		return nil, err
	}
	m, err := gradtau.NewModel(string(spec))
	if err != nil {
		return nil, err
	}
	s := &service{model: m, computing: make(chan struct{}, max(1, runtime.NumCPU()-c.runThreads))}
	if s.weights, err = m.NewWeights(); err != nil {
		return nil, err
	}
	trainAll, err := gradtau.LoadDataset(m, c.data+"/train-images-idx3-ubyte.gz", c.data+"/train-labels-idx1-ubyte.gz")
	if err != nil {
		return nil, err
	}
	testAll, err := gradtau.LoadDataset(m, c.data+"/t10k-images-idx3-ubyte.gz", c.data+"/t10k-labels-idx1-ubyte.gz")
	if err != nil {
		return nil, err
	}
	train, err := trainAll.Subset(indices(0, 6000, all))
	if err != nil {
		return nil, err
	}
	if s.forget, err = train.Subset(indices(0, 6000, func(i int) bool { return i%10 == 0 })); err != nil {
		return nil, err
	}
	if s.retain, err = train.Subset(indices(0, 6000, func(i int) bool { return i%10 != 0 })); err != nil {
		return nil, err
	}
	if s.val, err = testAll.Subset(indices(0, 2000, all)); err != nil {
		return nil, err
	}
	if s.requests, err = testAll.Inputs(); err != nil {
		return nil, err
	}
	s.testLen = testAll.Len()
	s.features = len(s.requests) / s.testLen
	out, err := m.OutputShape()
	if err != nil {
		return nil, err
	}
	s.classes = out[len(out)-1]

	if err := m.InitWeights(1); err != nil {
		return nil, err
	}
	opts, err := gradtau.DefaultTrainOptions()
	if err != nil {
		return nil, err
	}
	opts.Epochs, opts.Seed = 3, 1
	if _, err := m.Train(context.Background(), train, &opts); err != nil {
		return nil, err
	}
	for _, d := range []*gradtau.Dataset{trainAll, testAll, train} {
		_ = d.Close()
	}
	// Start-up trains on every core; from now on each call (the run, each prediction) is
	// capped, so a run leaves the other core to serving.
	if err := m.SetThreads(c.runThreads); err != nil {
		return nil, err
	}
	err = m.SetPublishHook(func(p gradtau.PublishPhase) bool {
		if p == gradtau.PublishPhaseBegin {
			s.buffers.Lock()
		} else {
			s.buffers.Unlock()
		}
		return true
	})
	return s, err
}

// gradtauError answers a failed gradtau call: the status name first, then the message.
func gradtauError(w http.ResponseWriter, err error, busyCode int) {
	code := http.StatusInternalServerError
	if errors.Is(err, gradtau.StatusBusy) {
		code = busyCode
	}
	var e *gradtau.Error
	if errors.As(err, &e) {
		http.Error(w, fmt.Sprintf("%s: %s", e.Status, err), code)
		return
	}
	http.Error(w, err.Error(), code)
}

// predict answers "i,j,..." (t10k indices) with one line per sample: the argmax class, then
// the logits as the hex digits of their IEEE-754 bits.
func (s *service) predict(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	items := strings.Split(strings.TrimSpace(body), ",")
	x := make([]float32, 0, len(items)*s.features)
	for _, item := range items {
		i, err := strconv.Atoi(strings.TrimSpace(item))
		if err != nil || i < 0 || i >= s.testLen {
			http.Error(w, fmt.Sprintf("bad t10k index %q", item), http.StatusBadRequest)
			return
		}
		x = append(x, s.requests[i*s.features:(i+1)*s.features]...)
	}
	if s.running.Load() {
		s.computing <- struct{}{}
		defer func() { <-s.computing }()
	}
	logits, err := s.model.Infer(x, len(items), gradtau.OutputRaw)
	if err != nil {
		gradtauError(w, err, http.StatusServiceUnavailable)
		return
	}
	var b strings.Builder
	for k := range items {
		row := logits[k*s.classes : (k+1)*s.classes]
		best := 0
		for c, v := range row {
			if v > row[best] {
				best = c
			}
		}
		b.WriteString(strconv.Itoa(best))
		for _, v := range row {
			fmt.Fprintf(&b, " %08x", math.Float32bits(v))
		}
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(b.String()))
}

// unlearn runs ∇τ with its defaults on this request's goroutine.
func (s *service) unlearn(w http.ResponseWriter, _ *http.Request) {
	opts, err := gradtau.DefaultUnlearnOptions(gradtau.MethodNablaTau)
	if err != nil {
		gradtauError(w, err, http.StatusConflict)
		return
	}
	opts.Seed, opts.Device = 7, "cpu"
	// Not r.Context(): a deletion request, once accepted, is carried out even if the client
	// stops waiting for the answer.
	s.running.Store(true)
	report, err := s.model.Unlearn(context.Background(), s.forget, s.retain, s.val, &opts)
	s.running.Store(false)
	if err != nil {
		gradtauError(w, err, http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"steps\": %d, \"seconds\": %.6f, \"weights_hash\": \"%s\"}\n",
		report.Steps, report.Seconds, s.weightsHash())
}

// weightsHash is FNV-1a 64 over the bytes of every weight buffer, in parameter order (the
// floats' in-memory bytes, little-endian on the machines gradtau supports), read under the
// lock the publish hook takes, so never during a publish.
func (s *service) weightsHash() string {
	s.buffers.RLock()
	defer s.buffers.RUnlock()
	h := fnv.New64a()
	var b [4]byte
	for _, name := range s.weights.Names() {
		for _, v := range s.weights.Get(name) {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			_, _ = h.Write(b[:])
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// readBody reads a request body of at most 1 MiB.
func readBody(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return string(b), err
}

func main() {
	log.SetFlags(0)
	c := parseFlags()
	s, err := newService(c)
	if err != nil {
		log.Fatalf("gradtau-serving: %v", err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.port))
	if err != nil {
		log.Fatalf("gradtau-serving: %v", err)
	}
	mux := http.NewServeMux()
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /predict", s.predict)
	mux.HandleFunc("POST /unlearn", s.unlearn)
	mux.HandleFunc("GET /weights_hash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, s.weightsHash())
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "bye")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			close(done)
		}()
	})
	fmt.Printf("listening on %d\n", c.port)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("gradtau-serving: %v", err)
	}
	<-done
	// Shutdown waited for the handlers, so normally no call is in flight; if one outlived
	// its timeout (a long run), Close refuses with StatusBusy and the process exit frees
	// the model instead.
	if err := s.model.Close(); err != nil {
		log.Printf("gradtau-serving: %v", err)
	}
}
