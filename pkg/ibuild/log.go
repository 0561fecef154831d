package ibuild

import (
	"context"
	"log/slog"
)

type loggerKey struct{}

// WithLogger returns a context whose use cases report to l what they have
// to say besides their results (a warning that a stale lockfile is being
// built, say). Without one they say nothing.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger is the context's logger, or one that discards everything.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
