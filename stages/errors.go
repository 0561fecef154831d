package stages

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a stage's problem with where it is: the stage's type, and once
// known, the entry and pipeline it belongs to and its index there. New
// returns one for options it refuses; the build adds the location, so a
// message names the stage once: "entry x86_64/qcow2 pipeline os stage 5
// (hostname): hostname: empty".
type Error struct {
	// Entry is the lockfile entry ("x86_64/qcow2"), Pipeline the
	// pipeline's name, Index the stage's place in it; empty (Index -1)
	// when not known.
	Entry    string
	Pipeline string
	Index    int
	Type     string
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Entry != "" {
		b.WriteString("entry " + e.Entry + " ")
	}
	if e.Pipeline != "" {
		fmt.Fprintf(&b, "pipeline %s stage %d (%s): ", e.Pipeline, e.Index, e.Type)
	} else {
		fmt.Fprintf(&b, "stage %s: ", e.Type)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// At locates err at stage index (of type typ) of pipeline in entry
// (entry may be empty): a stage Error of that type without a location gets
// it, anything else is wrapped in one.
func At(err error, entry, pipeline string, index int, typ string) error {
	var se *Error
	if errors.As(err, &se) && se.Type == typ && se.Pipeline == "" && err == error(se) {
		c := *se
		c.Entry, c.Pipeline, c.Index = entry, pipeline, index
		return &c
	}
	return &Error{Entry: entry, Pipeline: pipeline, Index: index, Type: typ, Err: err}
}
