package blueprint

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestComposerFieldsKnown checks that every field of composer's own
// blueprint types decodes here: none of them may be called unknown.
func TestComposerFieldsKnown(t *testing.T) {
	f, err := os.Open("../../testdata/blueprints/composer/fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		typ := reflect.TypeOf(Blueprint{})
		for _, key := range strings.Split(line, ".") {
			fi, ok := structFields(typ).fields[key]
			if !ok {
				t.Errorf("composer's field %s is unknown here (at %q)", line, key)
				break
			}
			ft := typ.FieldByIndex(fi.index).Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			typ = ft
		}
	}
	if n < 200 {
		t.Errorf("only %d fields listed", n)
	}
}

func TestIntegralFloats(t *testing.T) {
	// JavaScript and Python write whole numbers as 1000.0 or 1e3;
	// composer's encoding/json takes them for integer fields.
	data := `{"name": "x", "customizations": {
		"user": [{"name": "john.doe", "uid": 1000.0, "gid": 1e3}],
		"filesystem": [{"mountpoint": "/", "minsize": 2147483648.0}],
		"files": [{"path": "/etc/x", "user": 0.0, "data": "aGk=", "data_encoding": "base64", "ensure_parents": true}],
		"sshd": {"client_alive_interval": 30.0, "permit_root_login": "no"}}}`
	b, err := Parse("b.json", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	cu := b.Customizations
	if *cu.User[0].UID != 1000 || *cu.User[0].GID != 1000 || cu.Filesystem[0].MinSize != 2<<30 ||
		cu.Files[0].User != int64(0) || *cu.Sshd.ClientAliveInterval != 30 {
		t.Errorf("decoded %+v", cu)
	}
	for _, tc := range []struct{ data, want string }{
		{`{"name": "x", "customizations": {"user": [{"name": "a", "uid": 1.5}]}}`, "expected an integer, got float"},
		{`{"name": "x", "customizations": {"hostnme": "a"}}`, `did you mean "hostname"?`},
		{`{"name": "x", "customizations": {"files": [{"path": "/etc/x", "data": "%%", "data_encoding": "base64"}]}}`, "not valid base64"},
		{`{"name": "x", "customizations": {"files": [{"path": "/etc/x", "data_encoding": "hex"}]}}`, `unknown data encoding "hex"`},
		{`{"name": "x", "customizations": {"sshd": {"permit_root_login": "maybe"}}}`, `invalid value "maybe"`},
		{`{"name": "x", "customizations": {"firstboot": {"scripts": [{"type": "custom"}]}}}`, "needs contents"},
		{`{"name": "x", "customizations": {"firstboot": {"scripts": [{"contents": "x", "after": ["network"]}]}}}`, "want a full unit name"},
	} {
		if _, err := Parse("b.json", []byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want %q", tc.data, err, tc.want)
		}
	}
}
