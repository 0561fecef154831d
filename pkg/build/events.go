package build

import "time"

// Event is something a build reports through WithEvents: DownloadStart,
// DownloadProgress, Download, StageStart, StageDone, Commit.
type Event interface{ isEvent() }

// DownloadStart reports the packages a fetch is about to download (those
// not in the cache yet): how many and their size in all. A build may fetch
// more than once; each fetch adds to the totals.
type DownloadStart struct {
	Packages int
	Bytes    int64
}

// DownloadProgress reports bytes received since the previous
// DownloadProgress, at most every downloadTick while packages are being
// downloaded. Bytes is negative when a failed attempt's bytes are given
// back before a retry. Summed, they equal the finished downloads' Bytes.
type DownloadProgress struct {
	Bytes int64
}

// Download reports a package stored (or found already stored) in the cache.
type Download struct {
	Ref    string
	Bytes  int64
	Cached bool
	// Source names where the file came from (empty when Cached).
	Source string
}

// SourceWarning reports a source that served a file other than the one
// the lockfile pins (wrong size or sha256): the bytes were dropped and the
// next source asked.
type SourceWarning struct {
	Source string
	Ref    string
	Err    error
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
	// SharedWith names the pipeline that ran this same stage in this
	// build; its tree was copied (Duration is the wait and the copy).
	SharedWith string
	Duration   time.Duration
}

// Commit reports a stage's tree stored in the cache.
type Commit struct {
	Pipeline string
	Index    int
	Key      string
	Duration time.Duration
}

func (DownloadStart) isEvent()    {}
func (DownloadProgress) isEvent() {}
func (Download) isEvent()         {}
func (SourceWarning) isEvent()    {}
func (StageStart) isEvent()       {}
func (StageDone) isEvent()        {}
func (Commit) isEvent()           {}
