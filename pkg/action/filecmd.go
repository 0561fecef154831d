package action

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// FileCommands writes GitHub's environment files (GITHUB_OUTPUT, GITHUB_ENV,
// GITHUB_STEP_SUMMARY) and, unlike go-githubactions v1.3.0, returns errors
// instead of panicking and writes values safely.
//
// go-githubactions writes every value as a heredoc closed by the fixed
// delimiter "_GitHubActionsFileCommandDelimeter_": a value holding that line
// (package metadata is outside data) ends the heredoc early and the lines
// after it are read as more variables, LD_PRELOAD among them. FileCommands
// closes each value with a fresh random delimiter and refuses a value or
// name that contains it.
type FileCommands struct {
	// Getenv reads the variables naming the files.
	Getenv func(string) string
}

// delimiterPrefix is what the actions toolkit uses too, so a reader of a
// runner's files recognises the form.
const delimiterPrefix = "ghadelimiter_"

// nameRE is what an output or environment variable name may be: GitHub's
// own output ids, and nothing that could end the name early ("=", "<<", a
// newline).
var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// ErrNoFile is returned when the variable naming an environment file is
// unset: the program is not running in a GitHub Actions step.
var ErrNoFile = errors.New("environment file not set")

// SetOutput sets the step output name to value (GITHUB_OUTPUT).
func (f FileCommands) SetOutput(name, value string) error {
	return f.setVar("GITHUB_OUTPUT", name, value)
}

// SetEnv sets the environment variable name for the job's later steps
// (GITHUB_ENV).
func (f FileCommands) SetEnv(name, value string) error {
	return f.setVar("GITHUB_ENV", name, value)
}

// AddStepSummary appends markdown to the step's summary
// (GITHUB_STEP_SUMMARY). The summary is rendered, not parsed for commands,
// so no delimiter is needed.
func (f FileCommands) AddStepSummary(markdown string) error {
	if !strings.HasSuffix(markdown, "\n") {
		markdown += "\n"
	}
	return f.appendFile("GITHUB_STEP_SUMMARY", []byte(markdown))
}

func (f FileCommands) setVar(fileVar, name, value string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("setting %s in %s: invalid name", strings.ToValidUTF8(name, "?"), fileVar)
	}
	delim, err := newDelimiter()
	if err != nil {
		return fmt.Errorf("setting %s in %s: %w", name, fileVar, err)
	}
	// A random 128-bit delimiter cannot be guessed by whoever wrote the
	// value; refuse rather than retry if it turns up anyway.
	if strings.Contains(value, delim) {
		return fmt.Errorf("setting %s in %s: the value contains the delimiter", name, fileVar)
	}
	return f.appendFile(fileVar, []byte(name+"<<"+delim+"\n"+value+"\n"+delim+"\n"))
}

// newDelimiter is a variable so a test can force a collision.
var newDelimiter = func() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a delimiter: %w", err)
	}
	return delimiterPrefix + hex.EncodeToString(b[:]), nil
}

// appendFile appends data to the file named by fileVar in one write, so a
// failure never leaves half a variable behind a good one.
func (f FileCommands) appendFile(fileVar string, data []byte) error {
	path := f.Getenv(fileVar)
	if path == "" {
		return fmt.Errorf("writing %s: %w", fileVar, ErrNoFile)
	}
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", fileVar, err)
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return fmt.Errorf("writing %s: %w", fileVar, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", fileVar, err)
	}
	return nil
}
