package blueprint

import (
	"strings"
	"testing"
)

func TestParseForEdit(t *testing.T) {
	// Values that fail validation: the blueprint comes back with them.
	bp, err := ParseForEdit("b.toml", []byte("name = \"a\"\n[customizations]\nhostname = \"-x\"\n"))
	if bp == nil || bp.Customizations == nil || *bp.Customizations.Hostname != "-x" {
		t.Fatalf("got %+v", bp)
	}
	if err == nil || !strings.Contains(err.Error(), "b.toml:3:1: customizations.hostname: ") {
		t.Errorf("error %v", err)
	}
	// A document that does not decode: nothing.
	if bp, err := ParseForEdit("b.toml", []byte("name = 1\n")); bp != nil || err == nil {
		t.Errorf("got %+v, %v", bp, err)
	}
	if bp, err := ParseForEdit("b.json", []byte(`{"name":"j"}`)); bp == nil || err != nil || bp.Name != "j" {
		t.Errorf("json: %+v, %v", bp, err)
	}
	if bp, err := ParseForEdit("b.toml", []byte("name = \"ok\"\n")); bp == nil || err != nil {
		t.Errorf("valid: %+v, %v", bp, err)
	}
}
