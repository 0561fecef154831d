package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The live log: whole lines while the build runs, a line that never ends
// in parts (cut between characters), the rest when the build ends; and
// while a retry builds, its own log rather than the previous attempt's.
func TestLiveLog(t *testing.T) {
	s := openService(t, Config{Workers: 0, LiveLogInterval: 10 * time.Millisecond})
	ctx := context.Background()
	c, err := s.Submit(ctx, "alice", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID
	live := func() string {
		t.Helper()
		b, err := s.db.liveLog(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Bounded waits for what the shipper does on its own ticks; they
	// end as soon as it is seen.
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			got := live()
			if ok(got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen in a minute; the live log is %d bytes: %.200q", what, len(got), got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	path := filepath.Join(t.TempDir(), "build.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := s.shipLog(ctx, id, 0, path)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	write := func(text string) {
		t.Helper()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	write("attempt 2\nhalf a li")
	waitFor("the whole line", func(s string) bool { return s == "attempt 2\n" })

	// A progress bar: '\r', never '\n', past the bound, in two-byte
	// characters so that a cut in the middle of one would show.
	bar := strings.Repeat("\ré", maxLogLine)
	write(bar)
	waitFor("a long line without newline", func(s string) bool { return len(s) > maxLogLine })
	if got := live(); !utf8.ValidString(got) || strings.ContainsRune(got, utf8.RuneError) {
		t.Fatalf("the long line was cut inside a character")
	}

	// The end of the build: what is left is shipped, newline or not.
	write("\rdone")
	stop()
	stopped = true
	want := "attempt 2\nhalf a li" + bar + "\rdone"
	if got := live(); got != want {
		t.Fatalf("after stop: %d bytes, want %d; ends %q", len(got), len(want), got[max(0, len(got)-40):])
	}

	// A chunk inserted again (a commit that reported a failure) is not a
	// key error, and not a second copy.
	if err := s.db.appendLog(ctx, id, 0, 0, []byte("attempt 2\n")); err != nil {
		t.Fatalf("appending a chunk again: %v", err)
	}
	if got := live(); got != want {
		t.Fatalf("after a repeated chunk: %d bytes, want %d", len(got), len(want))
	}

	// Attempt 1's log is in the store; attempt 2 builds (on another
	// process: no work area here): its live log is what Log serves.
	if err := s.store.Put(ctx, artifactKey(id, 0, "build.log"), strings.NewReader("attempt 1\nfailed\n")); err != nil {
		t.Fatal(err)
	}
	setStatus := func(st Status) {
		t.Helper()
		im, err := s.db.image(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		im.Status, im.Attempt = st, 2
		if err := s.db.updateImage(ctx, id, 0, im); err != nil {
			t.Fatal(err)
		}
	}
	readLog := func() string {
		t.Helper()
		r, err := s.Log(ctx, "alice", id, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	setStatus(StatusBuilding)
	if got := readLog(); got != want {
		t.Errorf("while attempt 2 builds, Log serves %.40q, want its live log", got)
	}
	// Attempt 2 just started: nothing shipped yet is an empty log, not
	// attempt 1's.
	if err := s.db.deleteLog(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if got := readLog(); got != "" {
		t.Errorf("attempt 2 before its first chunk: Log serves %q, want nothing", got)
	}
	// Ended (its log stored): the stored log.
	setStatus(StatusFailure)
	if got := readLog(); got != "attempt 1\nfailed\n" {
		t.Errorf("after the build: Log serves %q, want the stored log", got)
	}
}

// An insert that committed but reported an error (a timeout) is retried
// with exactly the bytes it sent, under its seq, before the lines written
// since: a larger chunk under that seq would be dropped as a repeat, and
// those lines lost.
func TestLiveLogRetriesTheSameChunk(t *testing.T) {
	s := openService(t, Config{Workers: 0, LiveLogInterval: 10 * time.Millisecond})
	ctx := context.Background()
	c, err := s.Submit(ctx, "alice", Request{Blueprint: []byte(tarBlueprint), Images: []ImageRequest{{Arch: "x86_64", Type: "tar"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID
	var (
		mu    sync.Mutex
		calls int
		sent  []string
	)
	failed := make(chan struct{})
	s.appendLog = func(ctx context.Context, id string, idx, seq int, chunk []byte) error {
		if err := s.db.appendLog(ctx, id, idx, seq, chunk); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		sent = append(sent, fmt.Sprintf("%d:%q", seq, chunk))
		if calls == 1 {
			close(failed)
			return errors.New("i/o timeout")
		}
		return nil
	}
	path := filepath.Join(t.TempDir(), "build.log")
	if err := os.WriteFile(path, []byte("A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := s.shipLog(ctx, id, 0, path)
	select {
	case <-failed:
	case <-time.After(time.Minute):
		stop()
		t.Fatal("the first chunk was not shipped in a minute")
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("B\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	stop()
	got, err := s.db.liveLog(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(got) != "A\nB\n" {
		t.Errorf("live log %q, want %q (inserts %v)", got, "A\nB\n", sent)
	}
	if len(sent) < 2 || sent[1] != `0:"A\n"` {
		t.Errorf("inserts %v: the retry is not the failed chunk under its seq", sent)
	}
}
