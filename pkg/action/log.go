package action

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/image-builder-action/image-builder-action/pkg/build"
)

// logWriter is the step's log (stdout), shared by the action's own lines
// and the output of the tools a build runs, which arrive from several
// goroutines. It remembers whether the last byte ended a line, so that a
// workflow command is never glued to the end of a tool's partial line
// (the runner only reads commands at the start of a line).
type logWriter struct {
	mu     sync.Mutex
	w      io.Writer
	midLn  bool
	paused string // the stop-commands token while outside text is written
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// go-githubactions writes each command in one Write: start it on a
	// line of its own.
	if l.midLn && len(p) > 1 && p[0] == ':' && p[1] == ':' {
		if _, err := l.write([]byte("\n")); err != nil {
			return 0, err
		}
	}
	return l.write(p)
}

func (l *logWriter) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := l.w.Write(p)
	if n > 0 {
		l.midLn = p[n-1] != '\n'
	}
	return n, err
}

// command writes one workflow command on a line of its own.
func (l *logWriter) command(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commandLocked(line)
}

func (l *logWriter) commandLocked(line string) {
	if l.midLn {
		l.write([]byte("\n"))
	}
	l.write([]byte(line + "\n"))
}

// pause stops the runner from reading workflow commands in what follows
// (::stop-commands::TOKEN) until resume: text from outside — package
// metadata, a tool's output — could otherwise print "::add-mask::",
// "::set-output name=…::" or a fake annotation. The token is random so
// the text cannot resume commands itself.
func (l *logWriter) pause() error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("making a stop-commands token: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused != "" {
		return nil
	}
	l.paused = hex.EncodeToString(b[:])
	l.commandLocked("::stop-commands::" + l.paused)
	return nil
}

// resume ends a pause.
func (l *logWriter) resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused == "" {
		return
	}
	l.commandLocked("::" + l.paused + "::")
	l.paused = ""
}

// untrusted writes text that came from outside with commands paused.
func (l *logWriter) untrusted(text string) error {
	if text == "" {
		return nil
	}
	if err := l.pause(); err != nil {
		return err
	}
	defer l.resume()
	_, err := io.WriteString(l, text)
	return err
}

// buildLog turns a build's events into one collapsed log group per stage,
// holding the output of the tools the stage ran (commands paused), and a
// line saying whether it ran or came from the cache.
type buildLog struct {
	log *logWriter

	mu        sync.Mutex
	open      bool
	downloads int
	bytes     int64
	ran, hits int
}

func (b *buildLog) event(e build.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := e.(type) {
	case build.Download:
		if !e.Cached {
			b.downloads++
			b.bytes += e.Bytes
		}
	case build.SourceWarning:
		// A store or mirror serving other bytes than the lockfile pins is
		// worth an annotation: the build goes on from the next source.
		b.log.command("::warning title=package source::" + escapeData(fmt.Sprintf(
			"%s served a wrong file for %s (%v); the next source was asked", e.Source, e.Ref, e.Err)))
	case build.StageStart:
		b.closeLocked()
		if b.downloads > 0 {
			fmt.Fprintf(b.log, "downloaded %d packages (%.1f MiB), each checked against its sha256\n", b.downloads, float64(b.bytes)/(1<<20))
			b.downloads, b.bytes = 0, 0
		}
		state := ""
		if e.CacheHit {
			state = " (cached)"
		}
		b.log.command(fmt.Sprintf("::group::%s %d %s%s", e.Pipeline, e.Index, e.Type, state))
		b.open = true
		b.log.pause()
	case build.StageDone:
		b.log.resume()
		state := "ran"
		if e.CacheHit {
			state = "from the cache"
			b.hits++
		} else {
			b.ran++
		}
		fmt.Fprintf(b.log, "%s %d %s: %s in %.1fs\n", e.Pipeline, e.Index, e.Type, state, e.Duration.Seconds())
		b.closeLocked()
	}
}

// close ends a group a failed stage left open.
func (b *buildLog) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked()
}

func (b *buildLog) closeLocked() {
	b.log.resume()
	if b.open {
		b.log.command("::endgroup::")
		b.open = false
	}
}

// group runs f inside a log group named title.
func (l *logWriter) group(title string, f func() error) error {
	l.command("::group::" + escapeData(title))
	defer l.command("::endgroup::")
	return f()
}

// escapeData escapes a workflow command's message as the actions toolkit
// does.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// logHandler turns what the use cases log into the step's log: a warning
// becomes a warning annotation, anything else a plain line.
type logHandler struct{ r *runner }

func (h logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h logHandler) Handle(_ context.Context, rec slog.Record) error {
	msg := h.r.relText(rec.Message)
	switch {
	case rec.Level >= slog.LevelError:
		h.r.gh.Errorf("%s", msg)
	case rec.Level >= slog.LevelWarn:
		h.r.gh.Warningf("%s", msg)
	default:
		fmt.Fprintln(h.r.log, msg)
	}
	return nil
}

// The use cases log messages, not attributes or groups.
func (h logHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logHandler) WithGroup(string) slog.Handler      { return h }
