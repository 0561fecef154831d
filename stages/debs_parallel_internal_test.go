package stages

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestDebsParallel(t *testing.T) {
	var ran, running, most atomic.Int32
	err := debsParallel(context.Background(), 50, 3, func(i int) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		ran.Add(1)
		return nil
	})
	if err != nil || ran.Load() != 50 || most.Load() > 3 {
		t.Errorf("err %v, ran %d, at most %d at once (limit 3)", err, ran.Load(), most.Load())
	}
	ran.Store(0)
	boom := errors.New("boom")
	err = debsParallel(context.Background(), 1000, 1, func(i int) error {
		ran.Add(1)
		if i == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran.Load() > 4 {
		t.Errorf("err %v after %d calls: want boom, and no new calls after it", err, ran.Load())
	}
}
