package compose

import (
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// view keeps the composes that API requests read in memory, so a status
// poll is a map lookup, not two queries and a JSON decode. Every write
// this process makes to a compose's rows drops its entry (the next read
// loads it again, once for all the readers waiting on it). With SQLite
// this process is the only writer and an entry stays until a write or
// eviction; with PostgreSQL other processes write too (workers report
// progress), so an entry of a compose still running lives ttl and a
// finished one finalTTL (only a delete changes it then).
type view struct {
	ttl, finalTTL time.Duration

	mu      sync.Mutex
	entries map[string]viewEntry
	// seq counts drops and dropped[id] is the seq of id's last one: a
	// load of id that started before a drop of id must not put what it
	// read back into the map, while a drop of another compose (progress
	// on B) leaves a load of A alone. When dropped grows past
	// maxViewEntries it is cleared and floor set to seq: a load that
	// started before that stores nothing (it cannot tell any more).
	seq, floor uint64
	dropped    map[string]uint64
	flight     singleflight.Group
}

type viewEntry struct {
	l  *loaded
	at time.Time
}

// maxViewEntries bounds the map; past it, entries are dropped at random
// (Go's map order), the finished ones first in effect since they are
// the most numerous.
const maxViewEntries = 4096

func newView(shared bool) *view {
	v := &view{entries: map[string]viewEntry{}, dropped: map[string]uint64{}}
	if shared {
		v.ttl, v.finalTTL = time.Second, 30*time.Second
	}
	return v
}

func (v *view) fresh(e viewEntry) bool {
	if v.ttl == 0 {
		return true
	}
	ttl := v.ttl
	if derive(e.l).Final() {
		ttl = v.finalTTL
	}
	return time.Since(e.at) < ttl
}

// get returns a copy of the compose, from memory when it is there and
// fresh, else loaded by load.
func (v *view) get(ctx context.Context, id string, load func(context.Context, string) (*loaded, error)) (*loaded, error) {
	v.mu.Lock()
	e, ok := v.entries[id]
	start := v.seq
	v.mu.Unlock()
	if ok && v.fresh(e) {
		return e.l.clone(), nil
	}
	ch := v.flight.DoChan(id, func() (any, error) {
		// Readers share one load: its context must not end with the
		// first reader's request, but it is bounded, so a stalled
		// database cannot hold every reader's goroutine for good.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), viewLoadTimeout)
		defer cancel()
		l, err := load(lctx, id)
		if err != nil {
			return nil, err
		}
		v.mu.Lock()
		if start >= v.floor && v.dropped[id] <= start {
			if len(v.entries) >= maxViewEntries {
				for k := range v.entries {
					delete(v.entries, k)
					if len(v.entries) < maxViewEntries/2 {
						break
					}
				}
			}
			v.entries[id] = viewEntry{l: l, at: time.Now()}
		}
		v.mu.Unlock()
		return l, nil
	})
	// A reader whose request ends stops waiting; the load goes on for
	// the others.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*loaded).clone(), nil
	}
}

// viewLoadTimeout bounds a load that several readers share.
const viewLoadTimeout = 30 * time.Second

// drop forgets a compose after a write to its rows.
func (v *view) drop(id string) {
	v.mu.Lock()
	delete(v.entries, id)
	v.seq++
	if len(v.dropped) >= maxViewEntries {
		clear(v.dropped)
		v.floor = v.seq
	}
	v.dropped[id] = v.seq
	v.mu.Unlock()
	// A load in flight read the rows before this write: the next reader
	// must not join it.
	v.flight.Forget(id)
}

// clone copies what callers change in place (the images).
func (l *loaded) clone() *loaded {
	c := *l
	c.images = slices.Clone(l.images)
	c.jobIDs = slices.Clone(l.jobIDs)
	return &c
}
