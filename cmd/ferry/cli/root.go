// Package cli holds every ferry command. main is one line; tests run the
// real CLI in-process through Main.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command, so CI can tell them apart.
const (
	ExitOK      = 0
	ExitInvalid = 1 // invalid plans, a difference found, a failed check
	ExitUsage   = 2 // usage or infrastructure error
)

// exitError carries an exit code out of a command's RunE.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// withCode makes err end the process with code. A nil err with a non-zero
// code exits silently (the command already printed its report).
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Globals are the settings every command shares.
type Globals struct {
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// commands registers the constructors of the sub-commands; each command's
// file adds itself in init so that commands stay independent of each other.
var commands []func(*Globals) *cobra.Command

func register(f func(*Globals) *cobra.Command) { commands = append(commands, f) }

// NewRoot builds the ferry command tree writing to stdout and stderr.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &Globals{Stdout: stdout, Stderr: stderr}
	g.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Move services between Kubernetes clusters gradually, as GitOps",
		Long: `ferry moves services between Kubernetes clusters gradually and safely.
Migration plans live in Git; ferry validates them, renders per-cluster
Kustomize overlays of service exports and weighted splits, and shifts traffic
in progressive waves when gates pass.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	return root
}

// Main runs ferry with args and returns the process exit code.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "ferry:", ee.err)
		}
		return ee.code
	}
	// Everything cobra itself reports (unknown flag, wrong args) is usage.
	fmt.Fprintln(stderr, "ferry:", err)
	return ExitUsage
}
