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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// BenchmarkStatusUnderLoad is the load target: 200 clients poll
// GET /api/image-builder-composer/v2/composes/{id} over loopback TCP,
// with a bearer token, while ten composes lock and build in the same
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
	// One client for all, as a polling program would have: it keeps a
	// connection per client goroutine instead of dialling anew (the
	// default keeps 2 idle connections per host).
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()
	ctx := context.Background()
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", a.URL+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+a.Alice)
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
	var firstErr error
	// poll has every client GET path(client) n times, interval apart
	// (the first after a random part of it, so that the clients do not
	// ask in step), and returns the sorted latencies and the failures.
	poll := func(n int, interval time.Duration, path func(i int) string, ok func(body []byte) bool) ([]time.Duration, int) {
		var (
			mu    sync.Mutex
			lat   []time.Duration
			fails int
			wg    sync.WaitGroup
		)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.Int64N(int64(interval))))
				for range n {
					t0 := time.Now()
					body, err := get(path(i))
					d := time.Since(t0)
					if err == nil && !ok(body) {
						err = fmt.Errorf("GET %s: unexpected answer %s", path(i), body)
					}
					mu.Lock()
					lat = append(lat, d)
					if err != nil {
						fails++
						if firstErr == nil {
							firstErr = err
						}
					}
					mu.Unlock()
					time.Sleep(interval)
				}
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return lat, fails
	}
	anyAnswer := func([]byte) bool { return true }

	load0 := loadAverage()
	quiet, qfails := poll(perClient, interval, func(int) string { return floorPath }, anyAnswer)

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
		status := func(i int) string { return PrefixV2 + "composes/" + ids[i%len(ids)] }
		okStatus := func(body []byte) bool {
			var st ComposeStatus
			return json.Unmarshal(body, &st) == nil && st.Status != "" && st.Status != "failure"
		}
		lat, fails := poll(perClient, interval, status, okStatus)
		floor, ffails := poll(perClient, interval, func(int) string { return floorPath }, anyAnswer)
		load15 := loadAverage()
		polite, pfails := poll(politeN, politeInterval, status, okStatus)
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
		b.Logf("GET %scomposes/{id}, %d clients each asking every %v: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors",
			PrefixV2, clients, politeInterval, len(polite), pp(0.5), pp(0.99), pp(1), pfails)
		b.Logf("the same, every %v: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors; in the server (both shapes): p50 %.2f ms, p99 %.2f ms",
			interval, len(lat), p(0.5), p(0.99), p(1), fails, sp(0.5), sp(0.99))
		b.Logf("floor (a constant answer): before the composes p50 %.1f ms, p99 %.1f ms; while they run p50 %.1f ms, p99 %.1f ms",
			qp(0.5), qp(0.99), fp(0.5), fp(0.99))
		b.Logf("load average %s before, %s at the stress poll, %s at the 1 s poll, %s after; %d of %d composes still pending or building after the polls",
			load0, load1, load15, load2, running, len(ids))
		if firstErr != nil {
			b.Logf("first error: %v", firstErr)
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
