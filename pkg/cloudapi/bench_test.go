package cloudapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// BenchmarkStatusUnderLoad is the load target: 200 clients (in
// a process of their own) poll
// GET /api/image-builder-composer/v2/composes/{id} over loopback TCP,
// with a bearer token, while ten composes lock and build in the server's
// process (SQLite, one build at a time). The target is p99 ≤ 50 ms with
// no error; make bench prints the figures (-benchtime 1x), no test
// asserts them.
//
// Beside the status route it measures a floor: the same clients on a
// route that answers a constant before authentication and validation,
// once before the composes start (what the machine and HTTP cost) and
// once while they run. What the status route costs above the floor is
// ours; the floor is the machine's (on a shared 2-core machine, mostly
// waiting for a CPU). The load average is printed with the figures.
func BenchmarkStatusUnderLoad(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("building needs root")
	}
	locktest.NeedArchive(b)
	const (
		clients = 200
		// The stress shape: every client asks 50 times, 20 ms apart, so
		// the 200 ask up to 10,000 times a second.
		perClient, interval = 50, 20 * time.Millisecond
		// The polling shape: every client asks once a second (what a
		// program waiting for its compose does), 10 times.
		politeN, politeInterval = 10, time.Second
		floorPath               = "/bench-floor"
	)
	var (
		smu sync.Mutex
		srv []time.Duration
	)
	a := startAPIWith(b, 1, upload.Options{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == floorPath {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"ok":true}`)
				return
			}
			t0 := time.Now()
			h.ServeHTTP(w, r)
			if r.Method == "GET" && strings.HasPrefix(r.URL.Path, PrefixV2+"composes/") {
				d := time.Since(t0)
				smu.Lock()
				srv = append(srv, d)
				smu.Unlock()
			}
		})
	})
	ctx := context.Background()
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	get := func(path string) ([]byte, error) { return getWith(ctx, hc, a.URL, a.Alice, path) }
	var firstErr string
	// poll runs the clients in a process of their own, as polling
	// programs are: in this one they would take the CPU time the server
	// is measured on.
	poll := func(n int, interval time.Duration, paths []string, status bool) ([]time.Duration, int) {
		spec, err := json.Marshal(pollSpec{URL: a.URL, Token: a.Alice, Paths: paths, Clients: clients, N: n, Interval: interval, Status: status})
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), pollEnv+"="+string(spec))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("polling clients: %v", err)
		}
		var res pollResult
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("polling clients: %v: %s", err, out)
		}
		if firstErr == "" {
			firstErr = res.FirstErr
		}
		return res.Latencies, res.Fails
	}
	floorPaths := []string{floorPath}

	load0 := loadAverage()
	quiet, qfails := poll(perClient, interval, floorPaths, false)

	var ids []string
	for i := range 10 {
		body := fmt.Sprintf(`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "tar"},
		  "customizations": {"hostname": "bench%d"}}`, i)
		req, err := http.NewRequestWithContext(ctx, "POST", a.URL+PrefixV2+"compose", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.Alice)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var id ComposeId
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &id) != nil || id.Id == "" {
			b.Fatalf("POST compose: %d %s", resp.StatusCode, out)
		}
		ids = append(ids, id.Id)
	}
	defer func() {
		// Leave no build running behind the benchmark.
		for _, id := range ids {
			req, _ := http.NewRequestWithContext(ctx, "DELETE", a.URL+PrefixV2+"composes/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+a.Alice)
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()

	b.ResetTimer()
	for range b.N {
		smu.Lock()
		srv = srv[:0]
		smu.Unlock()
		load1 := loadAverage()
		var status []string
		for _, id := range ids {
			status = append(status, PrefixV2+"composes/"+id)
		}
		sched0 := schedLatencies()
		lat, fails := poll(perClient, interval, status, true)
		schedStress := schedLatencies().since(sched0)
		floor, ffails := poll(perClient, interval, floorPaths, false)
		load15 := loadAverage()
		sched1 := schedLatencies()
		polite, pfails := poll(politeN, politeInterval, status, true)
		schedPolite := schedLatencies().since(sched1)
		load2 := loadAverage()
		running := 0
		for _, id := range ids {
			body, err := get(PrefixV2 + "composes/" + id)
			var st ComposeStatus
			if err == nil && json.Unmarshal(body, &st) == nil && (st.Status == "pending" || st.Status == "building") {
				running++
			}
		}
		smu.Lock()
		slices.Sort(srv)
		sp := percentiles(srv)
		smu.Unlock()
		p, fp, qp, pp := percentiles(lat), percentiles(floor), percentiles(quiet), percentiles(polite)
		b.ReportMetric(pp(0.5), "p50-ms")
		b.ReportMetric(pp(0.99), "p99-ms")
		b.ReportMetric(p(0.99), "stress-p99-ms")
		b.ReportMetric(sp(0.99), "server-p99-ms")
		b.ReportMetric(fp(0.99), "floor-p99-ms")
		b.ReportMetric(qp(0.99), "quiet-floor-p99-ms")
		b.ReportMetric(float64(fails+ffails+qfails+pfails), "errors")
		// On stdout: the test log of a benchmark is cut to its first
		// lines, which the service's log fills.
		say := func(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
		say("GET %scomposes/{id}, %d clients each asking every %v: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors",
			PrefixV2, clients, politeInterval, len(polite), pp(0.5), pp(0.99), pp(1), pfails)
		say("the same, every %v: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors; in the server (both shapes): p50 %.2f ms, p99 %.2f ms",
			interval, len(lat), p(0.5), p(0.99), p(1), fails, sp(0.5), sp(0.99))
		say("floor (a constant answer): before the composes p50 %.1f ms, p99 %.1f ms; while they run p50 %.1f ms, p99 %.1f ms",
			qp(0.5), qp(0.99), fp(0.5), fp(0.99))
		say("load average %s before, %s at the stress poll, %s at the 1 s poll, %s after; %d of %d composes still pending or building after the polls",
			load0, load1, load15, load2, running, len(ids))
		say("in the server process, a runnable goroutine waited for a CPU: p99 %.1f ms during the 20 ms poll, %.1f ms during the 1 s poll (GOMAXPROCS %d)",
			schedStress.quantile(0.99)*1000, schedPolite.quantile(0.99)*1000, runtime.GOMAXPROCS(0))
		if firstErr != "" {
			say("first error: %s", firstErr)
		}
	}
	b.StopTimer()
}

// percentiles returns the q-quantile of sorted durations, in ms.
func percentiles(d []time.Duration) func(q float64) float64 {
	return func(q float64) float64 {
		if len(d) == 0 {
			return 0
		}
		return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
	}
}

// loadAverage is the machine's one-minute load average, for the record.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return "?"
	}
	return string(f[0])
}

// hist is a cumulative histogram of the runtime's scheduling latencies
// (how long runnable goroutines waited to run).
type hist struct {
	counts  []uint64
	buckets []float64
}

func schedLatencies() hist {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return hist{}
	}
	h := s[0].Value.Float64Histogram()
	return hist{counts: slices.Clone(h.Counts), buckets: h.Buckets}
}

// since is h minus an earlier reading.
func (h hist) since(old hist) hist {
	d := hist{counts: slices.Clone(h.counts), buckets: h.buckets}
	for i := range d.counts {
		if i < len(old.counts) {
			d.counts[i] -= old.counts[i]
		}
	}
	return d
}

// quantile is the upper bound of the bucket holding the q-quantile, in
// seconds.
func (h hist) quantile(q float64) float64 {
	var total uint64
	for _, c := range h.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var n uint64
	for i, c := range h.counts {
		n += c
		if n > want {
			return h.buckets[i+1]
		}
	}
	return h.buckets[len(h.buckets)-1]
}

// pollEnv, when set, makes the test binary the polling clients of the
// benchmark: it runs pollSpec and prints a pollResult.
const pollEnv = "IBUILD_BENCH_POLL"

func TestMain(m *testing.M) {
	if v := os.Getenv(pollEnv); v != "" {
		var spec pollSpec
		if err := json.Unmarshal([]byte(v), &spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(runPoll(spec))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pollSpec: Clients clients each GET Paths[client%len(Paths)] N times,
// Interval apart; with Status, an answer must be a compose status that
// is not a failure.
type pollSpec struct {
	URL, Token string
	Paths      []string
	Clients, N int
	Interval   time.Duration
	Status     bool
}

type pollResult struct {
	Latencies []time.Duration // sorted
	Fails     int
	FirstErr  string
}

func runPoll(spec pollSpec) pollResult {
	ctx := context.Background()
	// One client for all, as a polling program would have: it keeps a
	// connection per client goroutine instead of dialling anew (the
	// default keeps 2 idle connections per host).
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: spec.Clients, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()
	var (
		mu  sync.Mutex
		res pollResult
		wg  sync.WaitGroup
	)
	for i := range spec.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := spec.Paths[i%len(spec.Paths)]
			// The first request after a random part of the interval,
			// so that the clients do not ask in step.
			time.Sleep(time.Duration(rand.Int64N(int64(spec.Interval))))
			for range spec.N {
				t0 := time.Now()
				body, err := getWith(ctx, hc, spec.URL, spec.Token, path)
				d := time.Since(t0)
				if err == nil && spec.Status {
					var st ComposeStatus
					if json.Unmarshal(body, &st) != nil || st.Status == "" || st.Status == "failure" {
						err = fmt.Errorf("GET %s: unexpected answer %s", path, body)
					}
				}
				mu.Lock()
				res.Latencies = append(res.Latencies, d)
				if err != nil {
					res.Fails++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
				}
				mu.Unlock()
				time.Sleep(spec.Interval)
			}
		}()
	}
	wg.Wait()
	slices.Sort(res.Latencies)
	return res
}

// getWith GETs base+path with the bearer token and returns the body of a
// 200 answer.
func getWith(ctx context.Context, hc *http.Client, base, token, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, err
}
