// Package cmd holds ibuild's commands: each turns flags into options and
// makes one library call.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/version"
)

// ExitError carries an exit code other than 1 (or 1 with no message).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// Interrupted is the cause of a command's context cancelled by a signal.
type Interrupted struct{ Signal os.Signal }

func (e Interrupted) Error() string { return fmt.Sprintf("%v signal received", e.Signal) }

// interruptCode is the shell's exit status for a command stopped by the
// signal that cancelled ctx: 128 + its number (130 for SIGINT).
func interruptCode(ctx context.Context) int {
	var in Interrupted
	if errors.As(context.Cause(ctx), &in) {
		if s, ok := in.Signal.(syscall.Signal); ok {
			return 128 + int(s)
		}
	}
	return 130
}

// ExitCode prints err (when there is something to say) and returns the
// process exit code for it.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(os.Stderr, "ibuild:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(os.Stderr, "ibuild:", err)
	return 1
}

// New returns the root command.
func New() *cobra.Command {
	root := &cobra.Command{
		Use:           "ibuild",
		Short:         "Build bootable OS images from a locked blueprint",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// The use cases print nothing; what they log goes to stderr.
		PersistentPreRun: func(c *cobra.Command, _ []string) {
			c.SetContext(ibuild.WithLogger(c.Context(), slog.New(newLineHandler(c.ErrOrStderr()))))
		},
	}
	root.AddCommand(newList(), newLock(), newDiff(), newBuild(), newMatrix(), newAction(), newPublish(), newUpload(), newVerify(), newMirror(), newServe(), newWorker())
	return root
}
