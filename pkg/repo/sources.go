package repo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// HostSources reads the apt sources configured under root (use "/" for the
// running system): root/etc/apt/sources.list, then the files of
// root/etc/apt/sources.list.d in name order, as apt reads them. In that
// directory only names ending .list (one-line format) or .sources (deb822)
// made of letters, digits, '_', '-' and '.' are read; apt ignores the rest
// (foo.list.disabled, foo.sources.save, …) and so does HostSources.
//
// Only "deb" entries count: deb-src entries, comments and disabled (Enabled:
// no) paragraphs are skipped. An entry with several URIs or suites becomes
// one Source per URI and suite, in file order. Absolute Signed-By paths are
// resolved under root. Options apt has and Source lacks (trusted=yes,
// check-valid-until=no, by-hash, lang, …) are ignored: a Source is always
// verified. Flat repositories ("suite/" without components) are refused.
//
// Errors name the file and line.
func HostSources(root string) ([]Source, error) {
	etc := filepath.Join(root, "etc", "apt")
	var files []string
	main := filepath.Join(etc, "sources.list")
	if _, err := os.Stat(main); err == nil {
		files = append(files, main)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	partsDir := filepath.Join(etc, "sources.list.d")
	entries, err := os.ReadDir(partsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	var parts []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if !validPartName(name) || !(strings.HasSuffix(name, ".list") || strings.HasSuffix(name, ".sources")) {
			continue
		}
		parts = append(parts, name)
	}
	sort.Strings(parts)
	for _, name := range parts {
		files = append(files, filepath.Join(partsDir, name))
	}

	var srcs []Source
	for _, file := range files {
		var got []Source
		var err error
		if strings.HasSuffix(file, ".sources") {
			got, err = readDeb822Sources(file, root)
		} else {
			got, err = readOneLineSources(file, root)
		}
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, got...)
	}
	return srcs, nil
}

// validPartName is apt's rule for names in sources.list.d.
func validPartName(name string) bool {
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return name != ""
}

// readOneLineSources reads the one-line format:
//
//	deb [ option=value ... ] uri suite component...
func readOneLineSources(file, root string) ([]Source, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	defer f.Close()
	var srcs []Source
	sc := bufio.NewScanner(f)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", file, lineNo, fmt.Sprintf(format, args...))
		}
		typ := words[0]
		switch typ {
		case "deb":
		case "deb-src":
			continue
		default:
			return nil, fail("unknown type %q (want deb or deb-src)", typ)
		}
		words = words[1:]
		src := Source{}
		if len(words) > 0 && strings.HasPrefix(words[0], "[") {
			// Options run to the word that ends with ']'; "[arch=amd64]"
			// and "[ arch=amd64 ]" are both valid.
			var opts []string
			closed := false
			for len(words) > 0 && !closed {
				w := words[0]
				words = words[1:]
				w = strings.TrimPrefix(w, "[")
				if strings.HasSuffix(w, "]") {
					w = strings.TrimSuffix(w, "]")
					closed = true
				}
				if w != "" {
					opts = append(opts, w)
				}
			}
			if !closed {
				return nil, fail("options: missing ']'")
			}
			for _, o := range opts {
				k, v, ok := strings.Cut(o, "=")
				if !ok || k == "" {
					return nil, fail("option %q: want key=value", o)
				}
				switch k {
				case "arch":
					src.Architectures = splitList(v, ",")
				case "signed-by":
					src.SignedBy = resolveSignedBy(v, root)
				}
			}
		}
		if len(words) < 2 {
			return nil, fail("want \"deb [options] uri suite component...\"")
		}
		src.URI = strings.TrimRight(words[0], "/")
		src.Suite = words[1]
		src.Components = words[2:]
		if err := checkSource(&src); err != nil {
			return nil, fail("%v", err)
		}
		srcs = append(srcs, src)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", file, lineNo+1, err)
	}
	return srcs, nil
}

// readDeb822Sources reads a .sources file: deb822 paragraphs with Types,
// URIs, Suites, Components, Signed-By, Architectures and Enabled.
func readDeb822Sources(file, root string) ([]Source, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading apt sources: %w", err)
	}
	defer f.Close()
	paras, err := parseDeb822(f)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", file, pe.Line, pe.Msg)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var srcs []Source
	for _, p := range paras {
		fail := func(line int, format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...))
		}
		if en, ok := p.get("Enabled"); ok {
			switch strings.ToLower(en.value) {
			case "no", "false", "0":
				continue
			case "yes", "true", "1":
			default:
				return nil, fail(en.line, "Enabled: want yes or no, got %q", en.value)
			}
		}
		types, ok := p.get("Types")
		if !ok {
			return nil, fail(p.line, "paragraph has no Types field")
		}
		isDeb := false
		for _, t := range strings.Fields(types.value) {
			switch t {
			case "deb":
				isDeb = true
			case "deb-src":
			default:
				return nil, fail(types.line, "Types: unknown type %q (want deb or deb-src)", t)
			}
		}
		if !isDeb {
			continue
		}
		uris, ok := p.get("URIs")
		if !ok || len(strings.Fields(uris.value)) == 0 {
			return nil, fail(p.line, "paragraph has no URIs field")
		}
		suites, ok := p.get("Suites")
		if !ok || len(strings.Fields(suites.value)) == 0 {
			return nil, fail(p.line, "paragraph has no Suites field")
		}
		var comps []string
		if c, ok := p.get("Components"); ok {
			comps = strings.Fields(c.value)
		}
		var signedBy string
		if sb, ok := p.get("Signed-By"); ok {
			signedBy = deb822SignedBy(sb.value, root)
		}
		var arches []string
		if a, ok := p.get("Architectures"); ok {
			arches = strings.Fields(a.value)
		}
		for _, uri := range strings.Fields(uris.value) {
			for _, suite := range strings.Fields(suites.value) {
				src := Source{
					URI:           strings.TrimRight(uri, "/"),
					Suite:         suite,
					Components:    append([]string(nil), comps...),
					SignedBy:      signedBy,
					Architectures: append([]string(nil), arches...),
				}
				if len(src.Architectures) == 0 {
					src.Architectures = nil
				}
				if err := checkSource(&src); err != nil {
					return nil, fail(suites.line, "%v", err)
				}
				srcs = append(srcs, src)
			}
		}
	}
	return srcs, nil
}

// checkSource refuses what Fetch cannot use.
func checkSource(s *Source) error {
	if !strings.Contains(s.URI, ":") {
		return fmt.Errorf("URI %q has no scheme", s.URI)
	}
	if strings.HasSuffix(s.Suite, "/") {
		return fmt.Errorf("suite %q: flat repositories are not supported", s.Suite)
	}
	if len(s.Components) == 0 {
		return fmt.Errorf("suite %s has no components", s.Suite)
	}
	return nil
}

const armoredKeyHeader = "-----BEGIN PGP PUBLIC KEY BLOCK-----"

// deb822SignedBy turns a Signed-By value into SignedBy: an inline key block
// gets its lines back (a "." line stands for an empty one), a list of paths
// is resolved under root.
func deb822SignedBy(v, root string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, armoredKeyHeader) {
		lines := strings.Split(v, "\n")
		for i, l := range lines {
			if l == "." {
				lines[i] = ""
			}
		}
		return strings.Join(lines, "\n") + "\n"
	}
	return resolveSignedBy(strings.Join(strings.Fields(v), ","), root)
}

// resolveSignedBy resolves each absolute path of a comma-separated list
// under root; fingerprints are kept as written (Fetch refuses them).
func resolveSignedBy(v, root string) string {
	items := splitList(v, ",")
	for i, it := range items {
		if filepath.IsAbs(it) {
			items[i] = filepath.Join(root, it)
		}
	}
	return strings.Join(items, ",")
}

func splitList(v, sep string) []string {
	var out []string
	for _, s := range strings.Split(v, sep) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
