package cmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// lineHandler prints what the use cases log as plain lines on stderr:
// "warning: MESSAGE" for a warning, the message alone below that.
type lineHandler struct {
	mu *sync.Mutex
	w  io.Writer
}

func newLineHandler(w io.Writer) *lineHandler { return &lineHandler{mu: new(sync.Mutex), w: w} }

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	prefix := ""
	if r.Level >= slog.LevelWarn {
		prefix = strings.ToLower(r.Level.String())
		if r.Level < slog.LevelError {
			prefix = "warning"
		}
		prefix += ": "
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintf(h.w, "%s%s\n", prefix, r.Message)
	return err
}

// The use cases log messages, not attributes or groups.
func (h *lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lineHandler) WithGroup(string) slog.Handler      { return h }
