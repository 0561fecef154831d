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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.New().ExecuteContext(ctx)
	stop()
	os.Exit(cmd.ExitCode(err))
}
