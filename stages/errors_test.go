package stages_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

// TestErrorNamesTheStageOnce: a refused stage is named once, with its
// place when the build knows it.
func TestErrorNamesTheStageOnce(t *testing.T) {
	_, err := stages.New("hostname", json.RawMessage(`{"hostname":""}`))
	var se *stages.Error
	if !errors.As(err, &se) || se.Type != "hostname" {
		t.Fatalf("New: %v, want a *stages.Error", err)
	}
	const msg = "hostname: empty"
	if got := err.Error(); got != "stage hostname: "+msg {
		t.Errorf("New: %q", got)
	}
	located := stages.At(err, "x86_64/qcow2", "os", 5, "hostname")
	if got, want := located.Error(), "entry x86_64/qcow2 pipeline os stage 5 (hostname): "+msg; got != want {
		t.Errorf("At: %q, want %q", got, want)
	}
	if got, want := stages.At(errors.New("boom"), "", "image", 0, "disk").Error(), "pipeline image stage 0 (disk): boom"; got != want {
		t.Errorf("At: %q, want %q", got, want)
	}
}
