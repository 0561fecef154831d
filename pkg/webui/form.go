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
	// Disk is customizations.disk: the table's type and least size, and
	// its partitions.
	DiskType, DiskMinSize string
	Partitions            []partRow
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

// partRow is a partition of customizations.disk. Type says which fields
// count: plain (Mountpoint, FSType, Label), lvm (VGName and Volumes, one
// logical volume a line: "NAME MOUNTPOINT FSTYPE SIZE", "-" for no
// mount point), btrfs (Volumes, one subvolume a line: "NAME MOUNTPOINT").
type partRow struct {
	Base                                   int
	Type, MinSize, Mountpoint, FSType      string
	Label, VGName, LogicalVols, Subvolumes string
}

// empty says nothing but the type is set (a blank row posts "plain").
func (r partRow) empty() bool {
	return r.MinSize == "" && r.Mountpoint == "" && r.FSType == "" && r.Label == "" &&
		r.VGName == "" && strings.TrimSpace(r.LogicalVols) == "" && strings.TrimSpace(r.Subvolumes) == ""
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
	// PackageSearch says the server can search the repositories.
	PackageSearch bool
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
	f.DiskType, f.DiskMinSize = strings.TrimSpace(v.Get("customizations.disk.type")), strings.TrimSpace(v.Get("customizations.disk.minsize"))
	for i := range rows("customizations.disk.partitions") {
		p := fmt.Sprintf("customizations.disk.partitions[%d].", i)
		get := func(k string) string { return strings.TrimSpace(v.Get(p + k)) }
		f.Partitions = append(f.Partitions, partRow{Base: base(p + "base"), Type: get("type"), MinSize: get("minsize"),
			Mountpoint: get("mountpoint"), FSType: get("fs_type"), Label: get("label"), VGName: get("name"),
			LogicalVols: strings.ReplaceAll(v.Get(p+"logical_volumes"), "\r\n", "\n"),
			Subvolumes:  strings.ReplaceAll(v.Get(p+"subvolumes"), "\r\n", "\n")})
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
	var ps []partRow
	for _, x := range f.Partitions {
		if !x.empty() {
			ps = append(ps, x)
		}
	}
	f.Partitions = ps
}

// withBlankRows adds an empty row to each list, for adding one.
func (f bpForm) withBlankRows() bpForm {
	f.Users = append(append([]userRow(nil), f.Users...), userRow{Base: -1})
	f.Files = append(append([]fileRow(nil), f.Files...), fileRow{Base: -1})
	f.Filesystems = append(append([]fsRow(nil), f.Filesystems...), fsRow{Base: -1})
	f.Partitions = append(append([]partRow(nil), f.Partitions...), partRow{Base: -1, Type: "plain"})
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
	errs = append(errs, f.disk(cu)...)
	if empty, _ := toml.Marshal(cu); len(bytes.TrimSpace(empty)) == 0 {
		cu = nil
	}
	bp.Customizations = cu
	return bp, errs
}

// disk sets cu.Disk from the form: the base's disk with the fields the
// form shows replaced (start_offset, sector_size, part_type, part_label,
// part_uuid and volumes' labels stay as they were).
func (f bpForm) disk(cu *blueprint.Customizations) []fieldError {
	var errs []fieldError
	size := func(field, v string) uint64 {
		if v == "" {
			return 0 // not set: the image type's (or the contents') size
		}
		n, err := blueprint.ParseSize(v)
		if err != nil {
			errs = append(errs, fieldError{Field: field, Msg: err.Error()})
		}
		return n
	}
	if f.DiskType == "" && f.DiskMinSize == "" && len(f.Partitions) == 0 {
		cu.Disk = nil
		return nil
	}
	var d blueprint.DiskCustomization
	if cu.Disk != nil {
		d = *cu.Disk
	}
	d.Type = f.DiskType
	d.MinSize = size("customizations.disk.minsize", f.DiskMinSize)
	base := d.Partitions
	d.Partitions = nil
	for i, r := range f.Partitions {
		p := fmt.Sprintf("customizations.disk.partitions[%d]", i)
		var x blueprint.PartitionCustomization
		if r.Base >= 0 && r.Base < len(base) {
			x = base[r.Base]
		}
		x.Type = r.Type
		if x.Type == "plain" {
			// composer's default: written as it would be by hand.
			x.Type = ""
			if r.Base >= 0 && r.Base < len(base) {
				x.Type = base[r.Base].Type
			}
		}
		x.MinSize = size(p+".minsize", r.MinSize)
		x.Mountpoint, x.FSType, x.Label, x.Name = r.Mountpoint, r.FSType, r.Label, r.VGName
		baseLVs := x.LogicalVolumes
		x.LogicalVolumes = nil
		for j, line := range nonEmptyLines(r.LogicalVols) {
			fields := strings.Fields(line)
			var lv blueprint.LVCustomization
			if j < len(baseLVs) {
				lv = baseLVs[j]
			}
			lv.Name, lv.Mountpoint, lv.FSType, lv.MinSize = "", "", "", 0
			if len(fields) < 4 {
				errs = append(errs, fieldError{Field: fmt.Sprintf("%s.logical_volumes[%d]", p, j),
					Msg: fmt.Sprintf("logical volume %q: write NAME MOUNTPOINT FSTYPE SIZE (- for no mount point)", line)})
			} else {
				lv.Name, lv.Mountpoint, lv.FSType = fields[0], fields[1], fields[2]
				if lv.Mountpoint == "-" {
					lv.Mountpoint = ""
				}
				lv.MinSize = size(fmt.Sprintf("%s.logical_volumes[%d].minsize", p, j), strings.Join(fields[3:], " "))
			}
			x.LogicalVolumes = append(x.LogicalVolumes, lv)
		}
		x.Subvolumes = nil
		for j, line := range nonEmptyLines(r.Subvolumes) {
			fields := strings.Fields(line)
			if len(fields) != 2 {
				errs = append(errs, fieldError{Field: fmt.Sprintf("%s.subvolumes[%d]", p, j),
					Msg: fmt.Sprintf("subvolume %q: write NAME MOUNTPOINT", line)})
				continue
			}
			x.Subvolumes = append(x.Subvolumes, blueprint.BtrfsSubvolumeCustomization{Name: fields[0], Mountpoint: fields[1]})
		}
		d.Partitions = append(d.Partitions, x)
	}
	cu.Disk = &d
	return errs
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
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
	if d := cu.Disk; d != nil {
		f.DiskType = d.Type
		if d.MinSize > 0 {
			f.DiskMinSize = formatSize(d.MinSize)
		}
		for i, x := range d.Partitions {
			r := partRow{Base: i, Type: x.Type, Mountpoint: x.Mountpoint, FSType: x.FSType, Label: x.Label, VGName: x.Name}
			if r.Type == "" {
				r.Type = "plain"
			}
			if x.MinSize > 0 {
				r.MinSize = formatSize(x.MinSize)
			}
			var lvs, subs []string
			for _, lv := range x.LogicalVolumes {
				mp := lv.Mountpoint
				if mp == "" {
					mp = "-"
				}
				lvs = append(lvs, fmt.Sprintf("%s %s %s %s", lv.Name, mp, lv.FSType, formatSize(lv.MinSize)))
			}
			for _, sv := range x.Subvolumes {
				subs = append(subs, sv.Name+" "+sv.Mountpoint)
			}
			r.LogicalVols, r.Subvolumes = strings.Join(lvs, "\n"), strings.Join(subs, "\n")
			f.Partitions = append(f.Partitions, r)
		}
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
	m["customizations.disk.type"], m["customizations.disk.minsize"] = true, true
	for i := range f.Partitions {
		for _, k := range []string{"type", "minsize", "mountpoint", "fs_type", "label", "name", "logical_volumes", "subvolumes"} {
			m[fmt.Sprintf("customizations.disk.partitions[%d].%s", i, k)] = true
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
			if ctl[p+".type"] { // a partition: its type
				target = p + ".type"
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
