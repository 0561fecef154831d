package webui

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
)

// The blueprint editor shows a form for the common customizations and the
// TOML beside it. Either side can be edited: the form becomes a
// blueprint, the blueprint TOML; TOML becomes a blueprint, the blueprint
// the form. Both are checked the way lock checks a blueprint
// (blueprint.Parse, then lock.Precheck for what the distro cannot
// honour), and each error is shown at its form control and at its TOML
// line. The form's controls are named by the blueprint's field paths
// ("customizations.user[0].name"), so an error's field finds its control.
//
// What the form does not show (kernel, directories, repositories, …) is
// kept: the form carries the TOML it started from and changes only the
// fields it shows.

// bpForm is the editor's form.
type bpForm struct {
	Name, Description, Version, Distro string
	// Packages is one package a line: "name" or "name=version".
	Packages             string
	Hostname             string
	Timezone, NTPServers string
	Languages, Keyboard  string
	// Lists of names are given space or comma separated.
	ServicesEnabled, ServicesDisabled, ServicesMasked string
	FirewallPorts, FirewallEnabled, FirewallDisabled  string
	Users                                             []userRow
	Files                                             []fileRow
	Filesystems                                       []fsRow
	// Base is the TOML the form was filled from.
	Base string
}

type userRow struct {
	// Base is the row's index in Base's users, -1 for a new one.
	Base                        int
	Name, Password, Key, Groups string
}

type fileRow struct {
	Base                          int
	Path, Mode, User, Group, Data string
}

type fsRow struct {
	Base                int
	Mountpoint, MinSize string
}

// fieldError is an error shown at a control and at a TOML line.
type fieldError struct {
	Field string
	Line  int
	Msg   string
}

// editor is what the editor page renders.
type editor struct {
	Form bpForm
	TOML string
	// Errors by control name; Other are errors no control shows.
	Errors map[string][]string
	Lines  []fieldError
	Other  []string
	// Existing says the blueprint is being edited, not created.
	Existing bool
	Distros  []string
}

func (e *editor) Err(field string) []string { return e.Errors[field] }

// formFromValues reads the posted form.
func formFromValues(v url.Values) bpForm {
	f := bpForm{
		Name:             strings.TrimSpace(v.Get("name")),
		Description:      v.Get("description"),
		Version:          strings.TrimSpace(v.Get("version")),
		Distro:           strings.TrimSpace(v.Get("distro")),
		Packages:         v.Get("packages"),
		Hostname:         strings.TrimSpace(v.Get("customizations.hostname")),
		Timezone:         strings.TrimSpace(v.Get("customizations.timezone.timezone")),
		NTPServers:       v.Get("customizations.timezone.ntpservers"),
		Languages:        v.Get("customizations.locale.languages"),
		Keyboard:         strings.TrimSpace(v.Get("customizations.locale.keyboard")),
		ServicesEnabled:  v.Get("customizations.services.enabled"),
		ServicesDisabled: v.Get("customizations.services.disabled"),
		ServicesMasked:   v.Get("customizations.services.masked"),
		FirewallPorts:    v.Get("customizations.firewall.ports"),
		FirewallEnabled:  v.Get("customizations.firewall.services.enabled"),
		FirewallDisabled: v.Get("customizations.firewall.services.disabled"),
		Base:             v.Get("base"),
	}
	rows := func(prefix string) int {
		n, _ := strconv.Atoi(v.Get(prefix + ".rows"))
		return min(max(n, 0), 1000)
	}
	base := func(key string) int {
		n, err := strconv.Atoi(v.Get(key))
		if err != nil {
			return -1
		}
		return n
	}
	for i := range rows("customizations.user") {
		p := fmt.Sprintf("customizations.user[%d].", i)
		f.Users = append(f.Users, userRow{Base: base(p + "base"), Name: strings.TrimSpace(v.Get(p + "name")),
			Password: v.Get(p + "password"), Key: strings.TrimSpace(v.Get(p + "key")), Groups: v.Get(p + "groups")})
	}
	for i := range rows("customizations.files") {
		p := fmt.Sprintf("customizations.files[%d].", i)
		f.Files = append(f.Files, fileRow{Base: base(p + "base"), Path: strings.TrimSpace(v.Get(p + "path")),
			Mode: strings.TrimSpace(v.Get(p + "mode")), User: strings.TrimSpace(v.Get(p + "user")),
			Group: strings.TrimSpace(v.Get(p + "group")), Data: strings.ReplaceAll(v.Get(p+"data"), "\r\n", "\n")})
	}
	for i := range rows("customizations.filesystem") {
		p := fmt.Sprintf("customizations.filesystem[%d].", i)
		f.Filesystems = append(f.Filesystems, fsRow{Base: base(p + "base"), Mountpoint: strings.TrimSpace(v.Get(p + "mountpoint")),
			MinSize: strings.TrimSpace(v.Get(p + "minsize"))})
	}
	f.compact()
	return f
}

// compact drops empty rows, so that row i is element i of the blueprint's
// list and errors about that element find their row.
func (f *bpForm) compact() {
	var us []userRow
	for _, u := range f.Users {
		if u.Name != "" || u.Password != "" || u.Key != "" || strings.TrimSpace(u.Groups) != "" {
			us = append(us, u)
		}
	}
	f.Users = us
	var fs []fileRow
	for _, x := range f.Files {
		if x.Path != "" || x.Mode != "" || x.User != "" || x.Group != "" || x.Data != "" {
			fs = append(fs, x)
		}
	}
	f.Files = fs
	var ss []fsRow
	for _, x := range f.Filesystems {
		if x.Mountpoint != "" || x.MinSize != "" {
			ss = append(ss, x)
		}
	}
	f.Filesystems = ss
}

// withBlankRows adds an empty row to each list, for adding one.
func (f bpForm) withBlankRows() bpForm {
	f.Users = append(append([]userRow(nil), f.Users...), userRow{Base: -1})
	f.Files = append(append([]fileRow(nil), f.Files...), fileRow{Base: -1})
	f.Filesystems = append(append([]fsRow(nil), f.Filesystems...), fsRow{Base: -1})
	return f
}

var listSep = regexp.MustCompile(`[\s,]+`)

func splitList(s string) []string {
	var out []string
	for _, x := range listSep.Split(strings.TrimSpace(s), -1) {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// blueprint turns the form into a blueprint, starting from Base. Errors
// are the ones the form's own conversions find (a size that is no size).
func (f bpForm) blueprint() (*blueprint.Blueprint, []fieldError) {
	var errs []fieldError
	bp := &blueprint.Blueprint{}
	if strings.TrimSpace(f.Base) != "" {
		if b, err := blueprint.Parse("base.toml", []byte(f.Base)); err == nil {
			bp = b
			bp.Source = nil
		}
	}
	bp.Name, bp.Description, bp.Version, bp.Distro = f.Name, f.Description, f.Version, f.Distro
	bp.Packages = nil
	for _, line := range strings.Split(f.Packages, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, version, _ := strings.Cut(line, "=")
		bp.Packages = append(bp.Packages, blueprint.Package{Name: strings.TrimSpace(name), Version: strings.TrimSpace(version)})
	}
	cu := bp.Customizations
	if cu == nil {
		cu = &blueprint.Customizations{}
	}
	cu.Hostname = strPtr(f.Hostname)
	if tz, ntp := strPtr(f.Timezone), splitList(f.NTPServers); tz != nil || len(ntp) > 0 {
		cu.Timezone = &blueprint.TimezoneCustomization{Timezone: tz, NTPServers: ntp}
	} else {
		cu.Timezone = nil
	}
	if langs, kb := splitList(f.Languages), strPtr(f.Keyboard); len(langs) > 0 || kb != nil {
		cu.Locale = &blueprint.LocaleCustomization{Languages: langs, Keyboard: kb}
	} else {
		cu.Locale = nil
	}
	if e, d, m := splitList(f.ServicesEnabled), splitList(f.ServicesDisabled), splitList(f.ServicesMasked); len(e)+len(d)+len(m) > 0 {
		cu.Services = &blueprint.ServicesCustomization{Enabled: e, Disabled: d, Masked: m}
	} else {
		cu.Services = nil
	}
	var zones []blueprint.FirewallZoneCustomization
	if cu.Firewall != nil {
		zones = cu.Firewall.Zones
	}
	fw := &blueprint.FirewallCustomization{Ports: splitList(f.FirewallPorts), Zones: zones}
	if e, d := splitList(f.FirewallEnabled), splitList(f.FirewallDisabled); len(e)+len(d) > 0 {
		fw.Services = &blueprint.FirewallServices{Enabled: e, Disabled: d}
	}
	if len(fw.Ports) > 0 || fw.Services != nil || len(fw.Zones) > 0 {
		cu.Firewall = fw
	} else {
		cu.Firewall = nil
	}

	baseUsers := cu.User
	cu.User = nil
	for _, r := range f.Users {
		var u blueprint.UserCustomization
		if r.Base >= 0 && r.Base < len(baseUsers) {
			u = baseUsers[r.Base]
		}
		u.Name = r.Name
		u.Password, u.Key = strPtr(r.Password), strPtr(r.Key)
		u.Groups = splitList(r.Groups)
		cu.User = append(cu.User, u)
	}
	baseFiles := cu.Files
	cu.Files = nil
	for _, r := range f.Files {
		var x blueprint.FileCustomization
		if r.Base >= 0 && r.Base < len(baseFiles) {
			x = baseFiles[r.Base]
		}
		x.Path, x.Mode, x.Data = r.Path, r.Mode, r.Data
		x.User, x.Group = ownerValue(r.User), ownerValue(r.Group)
		cu.Files = append(cu.Files, x)
	}
	baseFS := cu.Filesystem
	cu.Filesystem = nil
	for i, r := range f.Filesystems {
		var x blueprint.FilesystemCustomization
		if r.Base >= 0 && r.Base < len(baseFS) {
			x = baseFS[r.Base]
		}
		x.Mountpoint = r.Mountpoint
		n, err := blueprint.ParseSize(r.MinSize)
		if err != nil {
			errs = append(errs, fieldError{Field: fmt.Sprintf("customizations.filesystem[%d].minsize", i), Msg: err.Error()})
		}
		x.MinSize = n
		cu.Filesystem = append(cu.Filesystem, x)
	}
	if empty, _ := toml.Marshal(cu); len(bytes.TrimSpace(empty)) == 0 {
		cu = nil
	}
	bp.Customizations = cu
	return bp, errs
}

// ownerValue reads a file's owner: a number is an id, anything else a name.
func ownerValue(s string) any {
	if s == "" {
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return s
}

func ownerString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// formFromBlueprint fills the form from a blueprint; base is its TOML.
func formFromBlueprint(bp *blueprint.Blueprint, base string) bpForm {
	f := bpForm{Name: bp.Name, Description: bp.Description, Version: bp.Version, Distro: bp.Distro, Base: base}
	var pk []string
	for _, p := range bp.Packages {
		if p.Version != "" {
			pk = append(pk, p.Name+"="+p.Version)
		} else {
			pk = append(pk, p.Name)
		}
	}
	f.Packages = strings.Join(pk, "\n")
	cu := bp.Customizations
	if cu == nil {
		return f
	}
	f.Hostname = deref(cu.Hostname)
	if tz := cu.Timezone; tz != nil {
		f.Timezone, f.NTPServers = deref(tz.Timezone), strings.Join(tz.NTPServers, " ")
	}
	if l := cu.Locale; l != nil {
		f.Languages, f.Keyboard = strings.Join(l.Languages, " "), deref(l.Keyboard)
	}
	if s := cu.Services; s != nil {
		f.ServicesEnabled, f.ServicesDisabled, f.ServicesMasked = strings.Join(s.Enabled, " "), strings.Join(s.Disabled, " "), strings.Join(s.Masked, " ")
	}
	if fw := cu.Firewall; fw != nil {
		f.FirewallPorts = strings.Join(fw.Ports, " ")
		if fw.Services != nil {
			f.FirewallEnabled, f.FirewallDisabled = strings.Join(fw.Services.Enabled, " "), strings.Join(fw.Services.Disabled, " ")
		}
	}
	for i, u := range cu.User {
		f.Users = append(f.Users, userRow{Base: i, Name: u.Name, Password: deref(u.Password), Key: deref(u.Key), Groups: strings.Join(u.Groups, " ")})
	}
	for i, x := range cu.Files {
		f.Files = append(f.Files, fileRow{Base: i, Path: x.Path, Mode: x.Mode, User: ownerString(x.User), Group: ownerString(x.Group), Data: x.Data})
	}
	for i, x := range cu.Filesystem {
		f.Filesystems = append(f.Filesystems, fsRow{Base: i, Mountpoint: x.Mountpoint, MinSize: formatSize(x.MinSize)})
	}
	return f
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// formatSize writes a size the way a user would: "2 GiB" when it is whole.
func formatSize(n uint64) string {
	for _, u := range []struct {
		name string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return strconv.FormatUint(n, 10)
}

// encodeTOML writes bp as TOML.
func encodeTOML(bp *blueprint.Blueprint) (string, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(false)
	if err := enc.Encode(bp); err != nil {
		return "", fmt.Errorf("writing blueprint as TOML: %w", err)
	}
	return b.String(), nil
}

// check parses data as lock would and returns the blueprint (nil when it
// does not decode; set, for the form, when only its values are wrong) and
// every error, located in data. The distro's refusals come only once the
// values are right, as in lock.
func check(ctx context.Context, defs *distro.Defs, data []byte) (*blueprint.Blueprint, []fieldError) {
	bp, err := blueprint.ParseForEdit("blueprint.toml", data)
	if err == nil {
		err = lock.Precheck(ctx, bp, lock.WithDefs(defs))
	}
	var out []fieldError
	for _, e := range blueprint.Errors(err) {
		out = append(out, fieldError{Field: e.Field, Line: e.Line, Msg: e.Msg})
	}
	if err != nil && len(out) == 0 {
		out = append(out, fieldError{Msg: err.Error()})
	}
	return bp, out
}

// controls are the names of the form's controls, for placing errors.
func (f bpForm) controls() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{"name", "description", "version", "distro", "packages",
		"customizations.hostname", "customizations.timezone.timezone", "customizations.timezone.ntpservers",
		"customizations.locale.languages", "customizations.locale.keyboard",
		"customizations.services.enabled", "customizations.services.disabled", "customizations.services.masked",
		"customizations.firewall.ports", "customizations.firewall.services.enabled", "customizations.firewall.services.disabled"} {
		m[n] = true
	}
	for i := range f.Users {
		for _, k := range []string{"name", "password", "key", "groups"} {
			m[fmt.Sprintf("customizations.user[%d].%s", i, k)] = true
		}
	}
	for i := range f.Files {
		for _, k := range []string{"path", "mode", "user", "group", "data"} {
			m[fmt.Sprintf("customizations.files[%d].%s", i, k)] = true
		}
	}
	for i := range f.Filesystems {
		for _, k := range []string{"mountpoint", "minsize"} {
			m[fmt.Sprintf("customizations.filesystem[%d].%s", i, k)] = true
		}
	}
	return m
}

// place puts each error at the nearest control that shows its field:
// "packages[2].name" at packages, "customizations.user[0]" at the row's
// name.
func (e *editor) place(errs []fieldError) {
	ctl := e.Form.controls()
	e.Errors = map[string][]string{}
	for _, fe := range errs {
		if fe.Line > 0 {
			e.Lines = append(e.Lines, fe)
		}
		target := ""
		for p := fe.Field; p != ""; p = parentField(p) {
			if ctl[p] {
				target = p
				break
			}
			if ctl[p+".name"] { // a row: its first control
				target = p + ".name"
				break
			}
			if ctl[p+".path"] {
				target = p + ".path"
				break
			}
			if ctl[p+".mountpoint"] {
				target = p + ".mountpoint"
				break
			}
		}
		if target == "" {
			msg := fe.Msg
			if fe.Field != "" {
				msg = fe.Field + ": " + msg
			}
			e.Other = append(e.Other, msg)
			continue
		}
		e.Errors[target] = append(e.Errors[target], fe.Msg)
	}
	sort.SliceStable(e.Lines, func(i, j int) bool { return e.Lines[i].Line < e.Lines[j].Line })
}

// parentField strips the last index or key of a field path.
func parentField(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// control is a form control as the editor template places it.
type control struct {
	Name, ID string
	Errs     []string
}

// F returns the control named name with its errors.
func (e *editor) F(name string) control {
	return control{Name: name, ID: controlID(name), Errs: e.Errors[name]}
}

// HasErrors says whether anything is wrong.
func (e *editor) HasErrors() bool { return len(e.Errors) > 0 || len(e.Other) > 0 || len(e.Lines) > 0 }
