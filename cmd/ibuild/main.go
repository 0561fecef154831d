// Command ibuild locks blueprints, builds disk images from lockfiles and
// publishes them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/image-builder-action/image-builder-action/cmd/ibuild/cmd"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// The first signal stops the work cleanly; a second one ends
		// the process at once (the default action).
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel(cmd.Interrupted{Signal: s})
	}()
	err := cmd.New().ExecuteContext(ctx)
	os.Exit(cmd.ExitCode(err))
}
