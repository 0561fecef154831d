package compose

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// A load of compose A that is in flight when compose B is written stays
// in memory (the next poll of A is a map lookup); one in flight when A
// itself is written does not (it read the rows before the write). Also
// when the record of drops is cleared while the load runs.
func TestViewDropsPerCompose(t *testing.T) {
	for _, tc := range []struct {
		name string
		// during runs while A's load is blocked.
		during func(v *view)
		// stored: whether A's load is kept.
		stored bool
	}{
		{"nothing written", func(*view) {}, true},
		{"B written", func(v *view) { v.drop("B") }, true},
		{"B written many times", func(v *view) {
			for range 100 {
				v.drop("B")
			}
		}, true},
		{"A written", func(v *view) { v.drop("A") }, false},
		{"A written, then B", func(v *view) { v.drop("A"); v.drop("B") }, false},
		{"record of drops cleared", func(v *view) {
			for i := range maxViewEntries + 1 {
				v.drop(string(rune('a'+i%26)) + string(rune(i)))
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newView(false)
			var loads atomic.Int32
			entered, release := make(chan struct{}), make(chan struct{})
			block := func(_ context.Context, id string) (*loaded, error) {
				if loads.Add(1) == 1 {
					close(entered)
					<-release
				}
				return &loaded{id: id}, nil
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if l, err := v.get(context.Background(), "A", block); err != nil || l.id != "A" {
					t.Errorf("get A: %v %v", l, err)
				}
			}()
			<-entered
			tc.during(v)
			close(release)
			wg.Wait()
			if _, err := v.get(context.Background(), "A", block); err != nil {
				t.Fatal(err)
			}
			want := int32(2)
			if tc.stored {
				want = 1
			}
			if n := loads.Load(); n != want {
				t.Errorf("%d loads of A, want %d (stored: %v)", n, want, tc.stored)
			}
			// A load that starts after every drop is kept.
			n := loads.Load()
			v.get(context.Background(), "A", block)
			if loads.Load() != n {
				t.Errorf("a load after the drops was not kept")
			}
		})
	}
}

// A reader whose request ends stops waiting for a shared load; the load
// goes on, and a later reader gets its result from memory.
func TestViewReaderGivesUp(t *testing.T) {
	v := newView(false)
	var loads atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	load := func(ctx context.Context, id string) (*loaded, error) {
		if loads.Add(1) == 1 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &loaded{id: id}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := v.get(ctx, "A", load)
		got <- err
	}()
	<-entered
	cancel()
	if err := <-got; err != context.Canceled {
		t.Fatalf("get with an ended request: %v, want %v", err, context.Canceled)
	}
	close(release)
	l, err := v.get(context.Background(), "A", load)
	if err != nil || l.id != "A" {
		t.Fatalf("get A: %v %v", l, err)
	}
	// The shared load went on after its first reader left: the later
	// reader joined it or found its result kept.
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads of A, want 1", n)
	}
}
