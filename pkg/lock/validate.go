package lock

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// A lockfile that lock writes must build: every stage it generates is
// decoded and validated with stages.New, as the build does, before
// anything is written. A blueprint field that becomes a stage's options is
// first checked alone, so a refusal names the field and its line; the
// pass over the finished pipelines then catches what only the whole entry
// shows (a disk too big for its partition table).

// stageChecker checks blueprint fields with the stages they become.
type stageChecker struct {
	bp   *blueprint.Blueprint
	errs []error
}

// check validates opts as a stage of type typ holding one blueprint
// field: a stage error about stageField ("files[0]", or "" for the whole
// options) is reported on bpField ("customizations.files[3]").
func (c *stageChecker) check(bpField, typ, stageField string, opts any) {
	b, err := json.Marshal(opts)
	if err == nil {
		_, err = stages.New(typ, b)
	}
	if err != nil {
		c.errs = append(c.errs, blueprintError(c.bp, bpField, typ, stageField, err))
	}
}

// blueprintError maps a stage's "stage TYPE: FIELD: message" onto the
// blueprint field the options came from, so the error points at its line.
func blueprintError(bp *blueprint.Blueprint, bpField, typ, stageField string, err error) error {
	msg := err.Error()
	var se *stages.Error
	if errors.As(err, &se) {
		msg = se.Err.Error()
	}
	field := bpField
	if rest, ok := strings.CutPrefix(msg, stageField); ok && (stageField == "" || strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, ": ")) {
		rest = strings.TrimPrefix(rest, ".")
		if sub, m, ok := strings.Cut(rest, ": "); ok && sub != "" && !strings.ContainsAny(sub, " \"") {
			field, msg = joinField(bpField, sub), m
		} else if ok && sub == "" {
			msg = m
		}
	}
	return bp.Errorf(field, "%s (the %s stage)", msg, typ)
}

func joinField(parent, sub string) string {
	if parent == "" {
		return sub
	}
	return parent + "." + sub
}

// validateEntry decodes and validates every stage of an entry the way the
// build does; origins maps "pipeline/index" to the blueprint field a
// stage's options came from, when one did.
func validateEntry(bp *blueprint.Blueprint, e *manifest.Entry, origins map[string]string) error {
	var errs []error
	for _, p := range e.Pipelines {
		for i, s := range p.Stages {
			if _, err := stages.New(s.Type, s.Options); err != nil {
				err = stages.At(err, e.Name(), p.Name, i, s.Type)
				if field := origins[fmt.Sprintf("%s/%d", p.Name, i)]; field != "" {
					errs = append(errs, bp.Errorf(field, "%v", err))
				} else {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
