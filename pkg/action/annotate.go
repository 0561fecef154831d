package action

import (
	"errors"
	"io/fs"
	"strconv"
	"syscall"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
)

// reported marks an error whose annotations were written already.
type reported struct{ error }

func (e reported) Unwrap() error { return e.error }

// annotate reports err as error annotations: one per blueprint problem,
// at its file, line and column (repo-relative, so GitHub shows it on the
// pull request's diff), or one for the step otherwise.
func (r *runner) annotate(err error, title string) {
	if errors.As(err, new(reported)) {
		return
	}
	if bes := blueprint.Errors(err); len(bes) > 0 {
		for _, e := range bes {
			props := map[string]string{"title": "blueprint"}
			msg := e.Msg
			if e.Field != "" {
				msg = e.Field + ": " + msg
			}
			if e.File != "" {
				props["file"] = r.rel(e.File)
				if e.Line > 0 {
					props["line"] = strconv.Itoa(e.Line)
				}
				if e.Column > 0 {
					props["col"] = strconv.Itoa(e.Column)
				}
			}
			r.gh.WithFieldsMap(props).Errorf("%s", r.relText(msg))
		}
		return
	}
	var se *lock.StaleError
	if errors.As(err, &se) {
		r.annotateFile(r.path(se.Lockfile), 1, "stale lockfile", err.Error())
		return
	}
	r.gh.WithFieldsMap(map[string]string{"title": title}).Errorf("%s", r.relText(err.Error()))
}

// annotateFile writes one error annotation on a file (a line of 0: the
// file as a whole, shown at its first line).
func (r *runner) annotateFile(path string, line int, title, msg string) {
	if line < 1 {
		line = 1
	}
	r.gh.WithFieldsMap(map[string]string{
		"file":  r.rel(path),
		"line":  strconv.Itoa(line),
		"title": title,
	}).Errorf("%s", r.relText(msg))
}

// owner returns a file's owner from its FileInfo.
func owner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
