package cmd

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/image-builder-action/image-builder-action/pkg/build"
)

// step is an event at a time since the start, or (ev nil) the build
// ending: progress.close.
type step struct {
	at time.Duration
	ev build.Event
}

// render feeds steps to a progress writing to a buffer.
func render(term, json bool, steps []step) string {
	var buf bytes.Buffer
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	p := &progress{w: &buf, term: term, json: json, now: func() time.Time { return now }}
	for _, s := range steps {
		now = t0.Add(s.at)
		if s.ev == nil {
			p.close()
			continue
		}
		p.event(s.ev)
	}
	return buf.String()
}

const mb = 1 << 20

// fetch is a download of 4 packages, 40 MiB, one package in the cache,
// then a stage.
var fetch = []step{
	{0, build.Download{Ref: "c:amd64=1", Bytes: 3 * mb, Cached: true}},
	{0, build.DownloadStart{Packages: 4, Bytes: 40 * mb}},
	{500 * time.Millisecond, build.DownloadProgress{Bytes: 4 * mb}},
	{550 * time.Millisecond, build.DownloadProgress{Bytes: 1 * mb}}, // within termRedraw
	{1 * time.Second, build.DownloadProgress{Bytes: 5 * mb}},
	{1 * time.Second, build.Download{Ref: "a:amd64=1", Bytes: 10 * mb}},
	{2 * time.Second, build.DownloadProgress{Bytes: 16 * mb}},
	{2 * time.Second, build.Download{Ref: "b:amd64=1", Bytes: 20 * mb}},
	{2 * time.Second, build.Download{Ref: "d:amd64=1", Bytes: 6 * mb}},
	{3 * time.Second, build.DownloadProgress{Bytes: 14 * mb}},
	{3 * time.Second, build.Download{Ref: "e:amd64=1", Bytes: 4 * mb}},
	{4 * time.Second, build.StageStart{Pipeline: "os", Index: 0, Type: "debs"}},
	{30 * time.Second, build.StageDone{Pipeline: "os", Index: 0, Type: "debs", Duration: 26 * time.Second}},
}

func TestProgressRender(t *testing.T) {
	bar := func(n int) string { return "[" + strings.Repeat("=", n) + strings.Repeat(" ", barWidth-n) + "]" }
	for _, tc := range []struct {
		name       string
		term, json bool
		steps      []step
		want       string
	}{
		{"plain", false, false, fetch, "" +
			"downloading 0/4 packages, 0.0/40.0 MiB (0%)\n" +
			"downloading 0/4 packages, 4.0/40.0 MiB (10%)\n" +
			"downloading 0/4 packages, 10.0/40.0 MiB (25%), 10.0 MiB/s\n" +
			"downloading 1/4 packages, 26.0/40.0 MiB (65%), 13.0 MiB/s\n" +
			"downloading 2/4 packages, 30.0/40.0 MiB (75%), 15.0 MiB/s\n" +
			"downloading 3/4 packages, 36.0/40.0 MiB (90%), 18.0 MiB/s\n" +
			"downloaded 4 packages (40.0 MiB) in 3.0s, 13.3 MiB/s; 1 were in the cache\n" +
			"os        0 debs         ran      26.0s\n"},
		{"terminal", true, false, fetch, "" +
			"\rdownloading " + bar(0) + " 0/4 packages  0.0/40.0 MiB\x1b[K" +
			"\rdownloading " + bar(2) + " 0/4 packages  4.0/40.0 MiB\x1b[K" +
			"\rdownloading " + bar(6) + " 0/4 packages  10.0/40.0 MiB  10.0 MiB/s\x1b[K" +
			"\rdownloading " + bar(15) + " 1/4 packages  26.0/40.0 MiB  13.0 MiB/s\x1b[K" +
			// b and d stored within termRedraw of the last redraw.
			"\rdownloading " + bar(24) + " 3/4 packages  40.0/40.0 MiB  13.3 MiB/s\x1b[K" +
			"\r\x1b[Kdownloaded 4 packages (40.0 MiB) in 3.0s, 13.3 MiB/s; 1 were in the cache\n" +
			"os        0 debs         ran      26.0s\n"},
		{"json", false, true, fetch, "" +
			`{"bytes":3145728,"cached":true,"event":"download","ref":"c:amd64=1"}` + "\n" +
			`{"bytes":41943040,"event":"download-start","packages":4}` + "\n" +
			`{"bytes":10485760,"cached":false,"event":"download","ref":"a:amd64=1"}` + "\n" +
			`{"bytes":20971520,"cached":false,"event":"download","ref":"b:amd64=1"}` + "\n" +
			`{"bytes":6291456,"cached":false,"event":"download","ref":"d:amd64=1"}` + "\n" +
			`{"bytes":4194304,"cached":false,"event":"download","ref":"e:amd64=1"}` + "\n" +
			`{"cache_hit":false,"event":"stage-start","index":0,"pipeline":"os","type":"debs"}` + "\n" +
			`{"cache_hit":false,"event":"stage-done","index":0,"pipeline":"os","seconds":26,"type":"debs"}` + "\n"},
		// Interrupted: the line is ended so the error starts on its own.
		{"terminal interrupted", true, false, []step{
			{0, build.DownloadStart{Packages: 2, Bytes: 2 * mb}},
			{2 * time.Second, build.DownloadProgress{Bytes: mb}},
			{3 * time.Second, nil},
		}, "" +
			"\rdownloading " + bar(0) + " 0/2 packages  0.0/2.0 MiB\x1b[K" +
			"\rdownloading " + bar(12) + " 0/2 packages  1.0/2.0 MiB  0.5 MiB/s\x1b[K" +
			"\n"},
		// A stage line while downloading (another pipeline's stage) goes
		// above the download line, which is drawn again.
		{"terminal stage during download", true, false, []step{
			{0, build.DownloadStart{Packages: 2, Bytes: 2 * mb}},
			{time.Second, build.StageDone{Pipeline: "build", Index: 0, Type: "debs", CacheHit: true}},
			{2 * time.Second, build.Download{Ref: "a:amd64=1", Bytes: mb}},
			{2 * time.Second, build.Download{Ref: "b:amd64=1", Bytes: mb}},
		}, "" +
			"\rdownloading " + bar(0) + " 0/2 packages  0.0/2.0 MiB\x1b[K" +
			"\r\x1b[Kbuild     0 debs         cached    0.0s\n" +
			"\rdownloading " + bar(0) + " 0/2 packages  0.0/2.0 MiB  0.0 MiB/s\x1b[K" +
			"\rdownloading " + bar(12) + " 1/2 packages  1.0/2.0 MiB  0.5 MiB/s\x1b[K" +
			"\r\x1b[Kdownloaded 2 packages (2.0 MiB) in 2.0s, 1.0 MiB/s\n"},
		// Everything in the cache: nothing about downloads.
		{"all cached", false, false, []step{
			{0, build.Download{Ref: "a:amd64=1", Bytes: mb, Cached: true}},
			{0, build.StageDone{Pipeline: "os", Index: 0, Type: "debs", CacheHit: true}},
		}, "os        0 debs         cached    0.0s\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(tc.term, tc.json, tc.steps); got != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

// A long download gives a bounded number of lines in a CI log and of
// redraws on a terminal.
func TestProgressBounded(t *testing.T) {
	const n = 20000 // 1 KiB every 5 ms: 100 s
	steps := []step{{0, build.DownloadStart{Packages: 1, Bytes: n << 10}}}
	for i := 1; i <= n; i++ {
		steps = append(steps, step{time.Duration(i) * 5 * time.Millisecond, build.DownloadProgress{Bytes: 1 << 10}})
	}
	steps = append(steps, step{n * 5 * time.Millisecond, build.Download{Ref: "big:amd64=1", Bytes: n << 10}})

	plain := render(false, false, steps)
	// A line at 0 and each tenth, one every plainEvery in between at most,
	// and the summary.
	if lines := strings.Count(plain, "\n"); lines < 11 || lines > 11+int(100*time.Second/plainEvery) {
		t.Errorf("plain: %d lines for a 100 s download:\n%s", lines, plain)
	}
	if strings.Contains(plain, "\r") {
		t.Errorf("plain output has carriage returns:\n%q", plain)
	}
	if !strings.HasSuffix(plain, "downloaded 1 packages (19.5 MiB) in 100.0s, 0.2 MiB/s\n") {
		t.Errorf("plain output ends:\n%s", plain[max(0, len(plain)-200):])
	}
	tty := render(true, false, steps)
	if draws := strings.Count(tty, "\r"); draws > int(100*time.Second/termRedraw)+3 {
		t.Errorf("terminal: %d redraws for a 100 s download, want at most one every %s", draws, termRedraw)
	}
	if lines := strings.Count(tty, "\n"); lines != 1 {
		t.Errorf("terminal: %d lines, want the summary alone", lines)
	}
}

// The download line is drawn in place on a terminal only, and never in a
// CI log. The terminal is a pseudo-terminal from /dev/ptmx.
func TestIsTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tc := range []struct {
		name    string
		w       io.Writer
		ci, trm string
		want    bool
	}{
		{"terminal", tty, "", "xterm", true},
		{"terminal in CI", tty, "true", "xterm", false},
		{"dumb terminal", tty, "", "dumb", false},
		{"pipe", pw, "", "xterm", false},
		{"buffer", &bytes.Buffer{}, "", "xterm", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("TERM", tc.trm)
			if got := isTerminal(tc.w); got != tc.want {
				t.Errorf("isTerminal = %v, want %v", got, tc.want)
			}
		})
	}
}
