package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
)

type listData struct {
	Query string
	Items []StoredBlueprint
}

func (s *Server) blueprintList(w http.ResponseWriter, r *http.Request, sess *session) {
	all, err := s.opts.Blueprints.List(r.Context(), sess.owner)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	d := listData{Query: q}
	for _, b := range all {
		if q == "" || strings.Contains(strings.ToLower(b.Name+"\n"+b.Description), strings.ToLower(q)) {
			d.Items = append(d.Items, b)
		}
	}
	s.render(w, r, http.StatusOK, "blueprints", page{Title: "Blueprints", Nav: "blueprints", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}

func (s *Server) editorPage(w http.ResponseWriter, r *http.Request, sess *session, status int, e *editor) {
	e.Form = e.Form.withBlankRows()
	e.Distros = s.defs.DistroNames()
	e.PackageSearch = s.opts.Packages != nil
	title := "New blueprint"
	if e.Existing {
		title = "Edit " + e.Form.Name
	}
	s.render(w, r, status, "edit", page{Title: title, Nav: "blueprints", CSRF: sess.csrf, Owner: sess.owner, Data: e})
}

func (s *Server) blueprintNew(w http.ResponseWriter, r *http.Request, sess *session) {
	f := bpForm{Version: "0.0.1"}
	if names := s.defs.DistroNames(); len(names) > 0 {
		f.Distro = names[len(names)-1]
	}
	// A new blueprint starts without errors: nothing is wrong yet.
	e := s.fromForm(r.Context(), f, false)
	e.Errors, e.Lines, e.Other = nil, nil, nil
	s.editorPage(w, r, sess, http.StatusOK, e)
}

func (s *Server) blueprintEditPage(w http.ResponseWriter, r *http.Request, sess *session) {
	v, _ := strconv.Atoi(r.URL.Query().Get("version"))
	sb, err := s.opts.Blueprints.Get(r.Context(), sess.owner, r.PathValue("name"), v)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	e := s.fromTOML(r.Context(), string(sb.Data), bpForm{})
	e.Existing = true
	s.editorPage(w, r, sess, http.StatusOK, e)
}

// fromForm checks the form: it becomes a blueprint, the blueprint TOML,
// and the TOML is checked as lock checks a file.
func (s *Server) fromForm(ctx context.Context, f bpForm, existing bool) *editor {
	e := &editor{Form: f, Existing: existing}
	bp, errs := f.blueprint()
	text, err := encodeTOML(bp)
	if err != nil {
		errs = append(errs, fieldError{Msg: err.Error()})
	} else {
		_, more := check(ctx, s.defs, []byte(text))
		errs = append(errs, more...)
	}
	e.TOML = text
	e.place(errs)
	return e
}

// fromTOML checks TOML and fills the form from it; when it does not
// decode, the form stays as it was (prev).
func (s *Server) fromTOML(ctx context.Context, text string, prev bpForm) *editor {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	bp, errs := check(ctx, s.defs, []byte(text))
	f := prev
	if bp != nil {
		f = formFromBlueprint(bp, text)
	}
	e := &editor{Form: f, TOML: text}
	e.place(errs)
	return e
}

// blueprintEdit is every button of the editor: check the form, apply the
// TOML to the form, save either side.
func (s *Server) blueprintEdit(w http.ResponseWriter, r *http.Request, sess *session) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	existing := r.PostForm.Get("existing") == "true"
	f := formFromValues(r.PostForm)
	if add := strings.TrimSpace(r.PostForm.Get("add-package")); add != "" {
		// A search result's Add button: the form checked with the package
		// added (a name already listed is not added twice).
		listed := false
		for _, line := range strings.Split(f.Packages, "\n") {
			name, _, _ := strings.Cut(line, "=")
			listed = listed || strings.TrimSpace(name) == add
		}
		if !listed {
			f.Packages = strings.TrimRight(f.Packages, "\n") + "\n" + add
			f.Packages = strings.TrimLeft(f.Packages, "\n")
		}
		r.PostForm.Set("action", "form")
	}
	var e *editor
	switch action := r.PostForm.Get("action"); action {
	case "form", "save-form":
		e = s.fromForm(r.Context(), f, existing)
	case "toml", "save-toml":
		e = s.fromTOML(r.Context(), r.PostForm.Get("toml"), f)
		e.Existing = existing
	default:
		http.Error(w, fmt.Sprintf("unknown action %q", action), http.StatusBadRequest)
		return
	}
	action := r.PostForm.Get("action")
	if !strings.HasPrefix(action, "save-") {
		s.editorPage(w, r, sess, http.StatusOK, e)
		return
	}
	if len(e.Errors) > 0 || len(e.Other) > 0 || len(e.Lines) > 0 {
		s.editorPage(w, r, sess, http.StatusUnprocessableEntity, e)
		return
	}
	sb, err := s.opts.Blueprints.Put(r.Context(), sess.owner, e.Form.Name, []byte(e.TOML))
	if err != nil {
		// The store's own rules (a name that is also a file name).
		if strings.Contains(err.Error(), "blueprint name") {
			e.Errors["name"] = append(e.Errors["name"], err.Error())
		} else {
			e.Other = append(e.Other, "saving: "+err.Error())
		}
		s.editorPage(w, r, sess, http.StatusUnprocessableEntity, e)
		return
	}
	redirect(w, r, "/blueprints/"+url.PathEscape(sb.Name))
}

// redirect sends the browser on after a POST, with or without htmx.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// blueprintImport takes a TOML or JSON file. A file that passes is saved
// (JSON as TOML); one that does not opens in the editor with its errors.
func (s *Server) blueprintImport(w http.ResponseWriter, r *http.Request, sess *session) {
	file, hdr, err := r.FormFile("file")
	if err != nil {
		http.Error(w, "no file uploaded: "+err.Error(), http.StatusBadRequest)
		return
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, blueprint.MaxSize+1))
	if err != nil || len(data) > blueprint.MaxSize {
		http.Error(w, "the file is unreadable or too large", http.StatusBadRequest)
		return
	}
	if strings.HasSuffix(strings.ToLower(hdr.Filename), ".json") {
		bp, err := blueprint.ParseForEdit("blueprint.json", data)
		if bp == nil {
			e := &editor{TOML: string(data)}
			e.place([]fieldError{{Msg: hdr.Filename + ": " + err.Error()}})
			s.editorPage(w, r, sess, http.StatusUnprocessableEntity, e)
			return
		}
		bp.Source = nil
		text, err := encodeTOML(bp)
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		data = []byte(text)
	}
	e := s.fromTOML(r.Context(), string(data), bpForm{})
	if len(e.Errors) > 0 || len(e.Other) > 0 || len(e.Lines) > 0 {
		s.editorPage(w, r, sess, http.StatusUnprocessableEntity, e)
		return
	}
	sb, err := s.opts.Blueprints.Put(r.Context(), sess.owner, e.Form.Name, []byte(e.TOML))
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	redirect(w, r, "/blueprints/"+url.PathEscape(sb.Name))
}

type showData struct {
	Current  StoredBlueprint
	Versions []StoredBlueprint
	Composes []Compose
}

func (s *Server) blueprintShow(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	vs, err := s.opts.Blueprints.Versions(r.Context(), sess.owner, name)
	if err == nil && len(vs) == 0 {
		err = fmt.Errorf("blueprint %s: %w", name, ErrNotFound)
	}
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d := showData{Current: vs[len(vs)-1], Versions: vs}
	if v, _ := strconv.Atoi(r.URL.Query().Get("version")); v > 0 {
		for _, x := range vs {
			if x.Version == v {
				d.Current = x
			}
		}
	}
	if all, err := s.opts.Composes.List(r.Context(), sess.owner); err == nil {
		for _, c := range all {
			if c.BlueprintName == name {
				d.Composes = append(d.Composes, c)
			}
		}
	}
	s.render(w, r, http.StatusOK, "blueprint", page{Title: "Blueprint " + name, Nav: "blueprints", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (s *Server) blueprintExport(w http.ResponseWriter, r *http.Request, sess *session) {
	v, _ := strconv.Atoi(r.URL.Query().Get("version"))
	sb, err := s.opts.Blueprints.Get(r.Context(), sess.owner, r.PathValue("name"), v)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	name := unsafeFileChars.ReplaceAllString(sb.Name, "_")
	w.Header().Set("Content-Type", "application/toml; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.toml"`, name))
	w.Write(sb.Data)
}

func (s *Server) blueprintDelete(w http.ResponseWriter, r *http.Request, sess *session) {
	if err := s.opts.Blueprints.Delete(r.Context(), sess.owner, r.PathValue("name")); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	redirect(w, r, "/blueprints")
}

// fieldChange is one field that differs between two versions.
type fieldChange struct {
	Field, Old, New string
}

type diffData struct {
	Name     string
	A, B     StoredBlueprint
	Versions []StoredBlueprint
	Changes  []fieldChange
}

// blueprintDiff compares two versions field by field, in the blueprint's
// own field paths ("customizations.user[0].groups[1]"): what review of
// a blueprint change needs, without TOML's formatting noise.
func (s *Server) blueprintDiff(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	vs, err := s.opts.Blueprints.Versions(r.Context(), sess.owner, name)
	if err == nil && len(vs) == 0 {
		err = fmt.Errorf("blueprint %s: %w", name, ErrNotFound)
	}
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	pick := func(key string, def int) StoredBlueprint {
		v, _ := strconv.Atoi(r.URL.Query().Get(key))
		for _, x := range vs {
			if x.Version == v {
				return x
			}
		}
		return vs[max(0, min(def, len(vs)-1))]
	}
	d := diffData{Name: name, A: pick("a", len(vs)-2), B: pick("b", len(vs)-1), Versions: vs}
	d.Changes, err = diffBlueprints(d.A.Data, d.B.Data)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	s.render(w, r, http.StatusOK, "diff", page{Title: "Changes to " + name, Nav: "blueprints", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}

func diffBlueprints(a, b []byte) ([]fieldChange, error) {
	fa, err := flatBlueprint(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatBlueprint(b)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []fieldChange
	for k := range keys {
		if fa[k] != fb[k] {
			out = append(out, fieldChange{Field: k, Old: fa[k], New: fb[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out, nil
}

// flatBlueprint maps every leaf of a blueprint to its value as JSON.
func flatBlueprint(data []byte) (map[string]string, error) {
	bp, err := blueprint.ParseForEdit("blueprint.toml", data)
	if bp == nil {
		return nil, fmt.Errorf("reading a stored blueprint: %w", err)
	}
	bp.Source = nil
	j, err := json.Marshal(bp)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal(j, &tree); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if p == "" {
					walk(k, c)
				} else {
					walk(p+"."+k, c)
				}
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", p, i), c)
			}
		case string:
			out[p] = x
		default:
			b, _ := json.Marshal(x)
			out[p] = string(b)
		}
	}
	walk("", tree)
	return out, nil
}

type packageResults struct {
	Query string
	Hits  []PackageHit
	Err   string
	// More says the list was cut at its limit.
	More bool
	// Add shows Add buttons: the results sit in the editor's form.
	Add bool
}

// packageSearch answers the editor's live package search (a fragment of
// results with Add buttons), or, without htmx, a page of results.
func (s *Server) packageSearch(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.opts.Packages == nil {
		http.Error(w, "package search is not available on this server", http.StatusNotFound)
		return
	}
	const limit = 25
	q := r.URL.Query()
	d := packageResults{Query: strings.TrimSpace(q.Get("pkgq")), Add: r.Header.Get("HX-Request") != ""}
	if len(d.Query) >= 2 {
		hits, err := s.opts.Packages.SearchPackages(r.Context(), q.Get("distro"), q.Get("arch"), d.Query, limit+1)
		if err != nil {
			s.log.Warn("package search failed", "err", err)
			d.Err = "searching the repositories failed: " + err.Error()
		}
		if len(hits) > limit {
			hits, d.More = hits[:limit], true
		}
		d.Hits = hits
	}
	s.render(w, r, http.StatusOK, "packages", page{Title: "Packages", Nav: "blueprints", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}
