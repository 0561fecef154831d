package build

import "time"

// Event is something a build reports through WithEvents: Download,
// StageStart, StageDone, Commit.
type Event interface{ isEvent() }

// Download reports a package stored (or found already stored) in the cache.
type Download struct {
	Ref    string
	Bytes  int64
	Cached bool
}

// StageStart reports a stage about to run, or, with CacheHit, a stage whose
// tree comes from the cache.
type StageStart struct {
	Pipeline string
	Index    int
	Type     string
	CacheHit bool
}

// StageDone reports a finished stage.
type StageDone struct {
	Pipeline string
	Index    int
	Type     string
	CacheHit bool
	Duration time.Duration
}

// Commit reports a stage's tree stored in the cache.
type Commit struct {
	Pipeline string
	Index    int
	Key      string
	Duration time.Duration
}

func (Download) isEvent()   {}
func (StageStart) isEvent() {}
func (StageDone) isEvent()  {}
func (Commit) isEvent()     {}
