package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// sinkRegistry is go-containerregistry's registry with blob uploads
// streamed into a hash instead of memory: its own upload handling buffers
// a whole blob, which would hide what the client holds. Blobs are checked
// against their digest and only their sizes are kept.
type sinkRegistry struct {
	next    http.Handler
	mu      sync.Mutex
	n       int
	uploads map[string]*sinkUpload
	blobs   map[string]int64
}

type sinkUpload struct {
	h    hash.Hash
	size int64
}

func newSinkRegistry(t testing.TB) string {
	s := &sinkRegistry{next: registry.New(registry.Logger(log0())), uploads: map[string]*sinkUpload{}, blobs: map[string]int64{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (s *sinkRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/blobs/uploads/"):
		s.mu.Lock()
		s.n++
		id := strconv.Itoa(s.n)
		s.uploads[id] = &sinkUpload{h: sha256.New()}
		s.mu.Unlock()
		w.Header().Set("Location", "/sink/"+id)
		w.WriteHeader(http.StatusAccepted)
	case strings.HasPrefix(p, "/sink/"):
		s.mu.Lock()
		u := s.uploads[strings.TrimPrefix(p, "/sink/")]
		s.mu.Unlock()
		if u == nil {
			http.Error(w, "unknown upload", http.StatusNotFound)
			return
		}
		n, err := io.Copy(u.h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.size += n
		if r.Method == http.MethodPatch {
			w.Header().Set("Location", p)
			w.Header().Set("Range", fmt.Sprintf("0-%d", u.size-1))
			w.WriteHeader(http.StatusAccepted)
			return
		}
		d := r.URL.Query().Get("digest")
		if got := "sha256:" + hex.EncodeToString(u.h.Sum(nil)); got != d {
			http.Error(w, "digest mismatch: "+got, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.blobs[d] = u.size
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodHead && strings.Contains(p, "/blobs/sha256:"):
		s.mu.Lock()
		size, ok := s.blobs[p[strings.LastIndex(p, "/")+1:]]
		s.mu.Unlock()
		if !ok {
			s.next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Docker-Content-Digest", p[strings.LastIndex(p, "/")+1:])
		w.WriteHeader(http.StatusOK)
	default:
		s.next.ServeHTTP(w, r)
	}
}

// sparseDisk makes a sparse file of size bytes with a little data at both
// ends (so its digest is not that of zeros).
func sparseDisk(t testing.TB, p string, size int64, seed byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("QFI\xfb ibuild sparse test "+string(rune('a'+seed%26))), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{seed, 1, 2, 3}, size-4); err != nil {
		t.Fatal(err)
	}
}

// heapSampler records the peak of HeapInuse while running.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.peak.Load() {
				s.peak.Store(ms.HeapInuse)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) Stop() uint64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// TestStreamingLargeDisk publishes a sparse 2 GiB disk (and its
// containerDisk) and checks the heap never holds more than a few buffers.
func TestStreamingLargeDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes and uploads 2 GiB twice")
	}
	const size = 2 << 30
	const limit = 64 << 20
	host := newSinkRegistry(t)
	dir := t.TempDir()
	sparseDisk(t, filepath.Join(dir, "disk.qcow2"), size, 1)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	s := sampleHeap(5 * time.Millisecond)
	start := time.Now()
	res, err := Publish(context.Background(), fixture(t, false), dir, host+"/big:v1", WithTypes("qcow2"),
		WithContainerDisk(host+"/big-cd:v1"), WithGetenv(envOf(nil)))
	peak := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("published %d MiB (+ containerDisk) in %s; peak heap in use %.1f MiB (%.1f MiB before)",
		size>>20, el.Round(time.Millisecond), float64(peak)/(1<<20), float64(before.HeapInuse)/(1<<20))
	if peak > before.HeapInuse+limit {
		t.Errorf("peak heap %d MiB: the disk is being held in memory (limit %d MiB over the start)", peak>>20, limit>>20)
	}
	if got := res.Images[0].Artifacts[0].Size; got != size {
		t.Errorf("size %d", got)
	}
}

// BenchmarkPublishLargeDisk publishes a sparse disk of
// IBUILD_BENCH_DISK_GIB GiB (default 4) to docker-registry (or the
// in-process sink when it is not installed) and reports throughput, peak
// heap and peak RSS of this process.
func BenchmarkPublishLargeDisk(b *testing.B) {
	gib := int64(4)
	if v := os.Getenv("IBUILD_BENCH_DISK_GIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			b.Fatalf("IBUILD_BENCH_DISK_GIB=%q", v)
		}
		gib = n
	}
	size := gib << 30
	var host string
	if _, err := exec.LookPath("docker-registry"); err == nil {
		host = dockerRegistry(b)
	} else {
		host = newSinkRegistry(b)
	}
	dir := b.TempDir()
	lf := fixture(b, false)
	b.SetBytes(size)
	b.ResetTimer()
	var peak uint64
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sparseDisk(b, filepath.Join(dir, "disk.qcow2"), size, byte(i))
		runtime.GC()
		s := sampleHeap(10 * time.Millisecond)
		b.StartTimer()
		start := time.Now()
		if _, err := Publish(context.Background(), lf, dir, host+"/bench:v1", WithTypes("qcow2"), WithGetenv(envOf(nil))); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if p := s.Stop(); p > peak {
			peak = p
		}
	}
	b.ReportMetric(float64(size*int64(b.N))/total.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
}
