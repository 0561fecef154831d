package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/image-builder-action/image-builder-action/pkg/build"
)

// progress turns build events into lines on w: a line per stage and, for
// downloads, one line rewritten in place on a terminal or a line at every
// tenth of the download (and every plainEvery) otherwise, then a summary.
// With json it writes one JSON object a line instead.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	// term: w is a terminal, so the download line is redrawn in place.
	term bool
	// now is the clock (nil: time.Now); tests set it.
	now func() time.Time

	dl downloadState
	// drawn: a download line is on the terminal, without its newline.
	drawn bool
}

// downloadState is the download in progress; packages found in the cache
// are not part of it.
type downloadState struct {
	active     bool
	start      time.Time
	packages   int   // to download
	bytes      int64 // their size in all
	done       int   // packages stored
	doneBytes  int64 // their size
	received   int64 // bytes received, stored packages' and partial ones
	cached     int
	lastDraw   time.Time // terminal: the last redraw
	lastLine   time.Time // plain: the last line
	lastDecile int       // plain: the tenth of the download last reported
}

const (
	// termRedraw is the least time between two redraws on a terminal.
	termRedraw = 100 * time.Millisecond
	// plainEvery is the most time between two plain download lines.
	plainEvery = 15 * time.Second
	// barWidth is the width of the terminal's bar, brackets excluded.
	barWidth = 24
)

// isTerminal reports whether progress on w can be drawn in place: w is a
// terminal, and this is not a CI log (CI=true) or a dumb terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("CI") == "true" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

func (p *progress) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

func (p *progress) emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.w, "%s\n", b)
}

// line writes a line of its own, under the download line when one is drawn.
func (p *progress) line(format string, args ...any) {
	p.clearLocked()
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.dl.active && p.term {
		p.drawLocked()
	}
}

// clearLocked removes the download line from the terminal.
func (p *progress) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// Write passes other output (the tools' logs) through, clearing the
// download line first so the two do not mix.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	return p.w.Write(b)
}

// close ends a download line left on the terminal (a failed or
// interrupted build), so what follows starts on a line of its own.
func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
	p.dl.active = false
}

func (p *progress) event(e build.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := e.(type) {
	case build.DownloadStart:
		if p.json {
			p.emit(map[string]any{"event": "download-start", "packages": e.Packages, "bytes": e.Bytes})
			return
		}
		if !p.dl.active {
			p.dl = downloadState{active: true, start: p.clock(), cached: p.dl.cached}
		}
		p.dl.packages += e.Packages
		p.dl.bytes += e.Bytes
		p.downloadLocked(true)
	case build.DownloadProgress:
		if p.json || !p.dl.active {
			return
		}
		p.dl.received += e.Bytes
		p.downloadLocked(false)
	case build.Download:
		if p.json {
			ev := map[string]any{"event": "download", "ref": e.Ref, "bytes": e.Bytes, "cached": e.Cached}
			if e.Source != "" {
				ev["source"] = e.Source
			}
			p.emit(ev)
			return
		}
		if e.Cached {
			p.dl.cached++
			return
		}
		if !p.dl.active {
			return
		}
		p.dl.done++
		p.dl.doneBytes += e.Bytes
		if p.dl.done >= p.dl.packages {
			p.finishLocked()
			return
		}
		p.downloadLocked(false)
	case build.SourceWarning:
		if p.json {
			p.emit(map[string]any{"event": "source-warning", "source": e.Source, "ref": e.Ref, "error": e.Err.Error()})
			return
		}
		p.line("warning: %s served a wrong file for %s (%v); asking the next source", e.Source, e.Ref, e.Err)
	case build.StageStart:
		if p.json {
			p.emit(map[string]any{"event": "stage-start", "pipeline": e.Pipeline, "index": e.Index, "type": e.Type, "cache_hit": e.CacheHit})
		}
	case build.StageDone:
		if p.json {
			ev := map[string]any{"event": "stage-done", "pipeline": e.Pipeline, "index": e.Index, "type": e.Type, "cache_hit": e.CacheHit, "seconds": e.Duration.Seconds()}
			if e.SharedWith != "" {
				ev["shared_with"] = e.SharedWith
			}
			p.emit(ev)
			return
		}
		state := "ran"
		switch {
		case e.CacheHit:
			state = "cached"
		case e.SharedWith != "":
			// Run once in this build, by the other pipeline.
			state = "shared"
		}
		p.line("%-8s %2d %-12s %-6s %6.1fs", e.Pipeline, e.Index, e.Type, state, e.Duration.Seconds())
	case build.Commit:
		if p.json {
			p.emit(map[string]any{"event": "commit", "pipeline": e.Pipeline, "index": e.Index, "key": e.Key, "seconds": e.Duration.Seconds()})
		}
	}
}

// downloadLocked shows the download's progress: a redraw on a terminal
// (at most every termRedraw unless force), a line at each new tenth or
// after plainEvery otherwise.
func (p *progress) downloadLocked(force bool) {
	now := p.clock()
	if p.term {
		if !force && now.Sub(p.dl.lastDraw) < termRedraw {
			return
		}
		p.dl.lastDraw = now
		p.drawLocked()
		return
	}
	decile := int(p.fraction() * 10)
	if p.dl.lastLine.IsZero() || decile > p.dl.lastDecile && decile < 10 || now.Sub(p.dl.lastLine) >= plainEvery {
		p.dl.lastLine, p.dl.lastDecile = now, decile
		fmt.Fprintf(p.w, "downloading %d/%d packages, %s/%s MiB (%d%%)%s\n", p.dl.done, p.dl.packages,
			mib(p.received()), mib(p.dl.bytes), int(p.fraction()*100), p.rate(now, ", "))
	}
}

// drawLocked rewrites the terminal's download line.
func (p *progress) drawLocked() {
	n := int(p.fraction() * barWidth)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", barWidth-n)
	fmt.Fprintf(p.w, "\rdownloading [%s] %d/%d packages  %s/%s MiB%s\x1b[K", bar, p.dl.done, p.dl.packages,
		mib(p.received()), mib(p.dl.bytes), p.rate(p.clock(), "  "))
	p.drawn = true
}

// finishLocked replaces the download line by a summary.
func (p *progress) finishLocked() {
	now := p.clock()
	p.clearLocked()
	took := now.Sub(p.dl.start)
	msg := fmt.Sprintf("downloaded %d packages (%s MiB) in %.1fs", p.dl.done, mib(p.dl.doneBytes), took.Seconds())
	if r := p.rate(now, ", "); r != "" {
		msg += r
	}
	if p.dl.cached > 0 {
		msg += fmt.Sprintf("; %d were in the cache", p.dl.cached)
	}
	fmt.Fprintln(p.w, msg)
	p.dl = downloadState{}
}

// received is what has arrived: stored packages count in full even when
// their last bytes' progress report is still on its way.
func (p *progress) received() int64 { return max(p.dl.received, p.dl.doneBytes) }

// fraction is how much of the download is done, by bytes (by packages
// when the sizes are unknown).
func (p *progress) fraction() float64 {
	var f float64
	switch {
	case p.dl.bytes > 0:
		f = float64(p.received()) / float64(p.dl.bytes)
	case p.dl.packages > 0:
		f = float64(p.dl.done) / float64(p.dl.packages)
	}
	return min(max(f, 0), 1)
}

// rate is the average download rate so far, after sep, or "" in the
// first second.
func (p *progress) rate(now time.Time, sep string) string {
	d := now.Sub(p.dl.start)
	if d < time.Second {
		return ""
	}
	return fmt.Sprintf("%s%s MiB/s", sep, mib(int64(float64(p.received())/d.Seconds())))
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }
