package build

import (
	"encoding/json"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/binfmt"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// TestStageVersionInKey: a stage's own version is part of its object key,
// so raising it builds that stage (and those after it) again.
func TestStageVersionInKey(t *testing.T) {
	lf := &manifest.Lockfile{Version: manifest.FormatVersion, Entries: []manifest.Entry{{
		Distro: "debian-12", Arch: "x86_64", Type: "tar",
		Pipelines: []manifest.Pipeline{{Name: "os", Stages: []manifest.Stage{
			{Type: "hostname", Options: json.RawMessage(`{"hostname":"h"}`)},
		}}},
	}}}
	plans, err := planEntry(lf, &lf.Entries[0], binfmt.HostArch())
	if err != nil {
		t.Fatal(err)
	}
	in := keyInput{Arch: "x86_64", Type: "hostname", Options: json.RawMessage(`{"hostname":"h"}`), Inputs: map[string]string{}, Packages: []string{}}
	in.StageVersion = stages.Version("hostname")
	if in.StageVersion < 1 {
		t.Fatalf("hostname has version %d", in.StageVersion)
	}
	want, _ := stageKey(in)
	if got := plans[0].stages[0].key; got != want {
		t.Errorf("key %s, want %s (with the stage's version %d)", got, want, in.StageVersion)
	}
	in.StageVersion++
	if raised, _ := stageKey(in); raised == want {
		t.Error("raising the stage's version leaves its key unchanged")
	}
}
