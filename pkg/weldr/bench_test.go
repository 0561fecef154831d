package weldr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
)

// BenchmarkStatusUnderLoad: 200 clients poll compose status over the
// socket while ten composes lock and build in the same process (SQLite,
// one build at a time). It reports the latency percentiles of
// GET /compose/status/UUID; the target is p99 ≤ 50 ms. Run by
// make bench with -benchtime 1x.
func BenchmarkStatusUnderLoad(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("building needs root")
	}
	locktest.NeedArchive(b)
	// The server's own time per request, apart from the client's and
	// the socket's: on a loaded machine the end-to-end figure is mostly
	// waiting for a CPU.
	var (
		smu sync.Mutex
		srv []time.Duration
	)
	c, _, _ := serveWith(b, 1, serveOptions{wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t0 := time.Now()
			h.ServeHTTP(w, r)
			if strings.Contains(r.URL.Path, "/compose/status/") {
				d := time.Since(t0)
				smu.Lock()
				srv = append(srv, d)
				smu.Unlock()
			}
		})
	}})
	ctx := context.Background()
	if err := c.PushTOML(ctx, []byte("name = \"bench\"\ndistro = \"debian-12\"\n[customizations]\nhostname = \"bench\"\n")); err != nil {
		b.Fatal(err)
	}
	var ids []string
	for range 10 {
		id, err := c.StartCompose(ctx, "bench", "tar", 0)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	const clients, perClient = 200, 50
	// poll has every client GET route(client) perClient times, 20 ms
	// apart, and returns the latencies and the failures.
	poll := func(route func(i int) string, ok func(body []byte) bool) ([]time.Duration, int) {
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
				for range perClient {
					t0 := time.Now()
					var raw json.RawMessage
					err := c.JSON(ctx, "GET", route(i), "", nil, &raw)
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					if err != nil || !ok(raw) {
						fails++
					}
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return lat, fails
	}
	b.ResetTimer()
	for range b.N {
		lat, fails := poll(func(i int) string { return "/compose/status/" + ids[i%len(ids)] }, func(body []byte) bool {
			var st struct{ UUIDs []ComposeStatus }
			return json.Unmarshal(body, &st) == nil && len(st.UUIDs) == 1
		})
		smu.Lock()
		slices.Sort(srv)
		sp := percentiles(srv)
		smu.Unlock()
		// The floor: the same clients on GET /api/status, which reads
		// nothing. What it costs is the socket, HTTP and waiting for a
		// CPU, which no change to the status route can remove.
		floor, ffails := poll(func(int) string { return "/api/status" }, func([]byte) bool { return true })
		p, fp := percentiles(lat), percentiles(floor)
		b.ReportMetric(p(0.5), "p50-ms")
		b.ReportMetric(p(0.99), "p99-ms")
		b.ReportMetric(sp(0.99), "server-p99-ms")
		b.ReportMetric(fp(0.99), "floor-p99-ms")
		b.ReportMetric(float64(len(lat)), "requests")
		b.ReportMetric(float64(fails+ffails), "errors")
		// On stdout: the test log of a benchmark is cut to its first
		// lines, which the service's log fills.
		fmt.Printf("    weldr GET /compose/status/UUID, %d requests from %d clients in this process: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors; in the server: p50 %.2f ms, p99 %.2f ms; GET /api/status: p50 %.1f ms, p99 %.1f ms",
			len(lat), clients, p(0.5), p(0.99), p(1), fails, sp(0.5), sp(0.99), fp(0.5), fp(0.99))
		fmt.Println()
	}
	b.StopTimer()
	// Leave no build running behind the benchmark.
	for _, id := range ids {
		_ = c.JSON(ctx, "DELETE", "/compose/cancel/"+id, "", nil, nil)
	}
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
