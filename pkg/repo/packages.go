package repo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// field identifies a Packages field that ParsePackages keeps.
type field uint8

const (
	fNone field = iota
	fPackage
	fVersion
	fArchitecture
	fMultiArch
	fEssential
	fPriority
	fSection
	fDepends
	fPreDepends
	fProvides
	fConflicts
	fBreaks
	fReplaces
	fRecommends
	fFilename
	fSHA256
	fSize
	fInstalledSize
	nFields
)

// fieldNames are the canonical spellings, indexed by field.
var fieldNames = [nFields]string{
	fPackage:       "Package",
	fVersion:       "Version",
	fArchitecture:  "Architecture",
	fMultiArch:     "Multi-Arch",
	fEssential:     "Essential",
	fPriority:      "Priority",
	fSection:       "Section",
	fDepends:       "Depends",
	fPreDepends:    "Pre-Depends",
	fProvides:      "Provides",
	fConflicts:     "Conflicts",
	fBreaks:        "Breaks",
	fReplaces:      "Replaces",
	fRecommends:    "Recommends",
	fFilename:      "Filename",
	fSHA256:        "SHA256",
	fSize:          "Size",
	fInstalledSize: "Installed-Size",
}

// lookupField maps a field name to its id. The archive writes canonical
// spellings, which the switch matches without allocating; deb822 field names
// are case-insensitive, so anything else is compared case-folded.
func lookupField(name []byte) field {
	switch string(name) {
	case "Package":
		return fPackage
	case "Version":
		return fVersion
	case "Architecture":
		return fArchitecture
	case "Multi-Arch":
		return fMultiArch
	case "Essential":
		return fEssential
	case "Priority":
		return fPriority
	case "Section":
		return fSection
	case "Depends":
		return fDepends
	case "Pre-Depends":
		return fPreDepends
	case "Provides":
		return fProvides
	case "Conflicts":
		return fConflicts
	case "Breaks":
		return fBreaks
	case "Replaces":
		return fReplaces
	case "Recommends":
		return fRecommends
	case "Filename":
		return fFilename
	case "SHA256":
		return fSHA256
	case "Size":
		return fSize
	case "Installed-Size":
		return fInstalledSize
	}
	for f := fPackage; f < nFields; f++ {
		if len(fieldNames[f]) == len(name) && strings.EqualFold(fieldNames[f], string(name)) {
			return f
		}
	}
	return fNone
}

// stanza accumulates the kept fields of one paragraph. Values are appended
// to buf and turned into a single string when the paragraph ends, so a
// package costs one allocation for all its text rather than one per field.
type stanza struct {
	buf   []byte
	start [nFields]int32
	end   [nFields]int32
	seen  uint32 // bit per field
	line  int    // line of the paragraph's first field
	cur   field  // field that continuation lines extend
	any   bool   // paragraph has at least one field
}

func (s *stanza) reset() {
	s.buf = s.buf[:0]
	s.seen = 0
	s.cur = fNone
	s.any = false
}

// ParseError is a syntax or content error in an index, with the line it is on
// (1-based).
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParsePackages reads a Debian Packages index (deb822 paragraphs) and returns
// its stanzas in file order. baseURI is the repository URI the index belongs
// to (Package.URL = baseURI + "/" + Filename); origin is stored in every
// Package's Origin. Fields other than those Package carries are skipped;
// continuation lines of kept fields are folded into one line. Package,
// Version, Architecture and Filename are required. Errors are *ParseError,
// naming the line.
func ParsePackages(r io.Reader, baseURI string, origin int) ([]Package, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	prefix := strings.TrimRight(baseURI, "/") + "/"
	in := newInterner()
	pkgs := make([]Package, 0, 1024)

	var (
		st      = stanza{buf: make([]byte, 0, 4096)}
		lineNo  int
		long    []byte // accumulates a line longer than the buffer
		lastErr error
	)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
		}
		lastErr = err
		if len(line) == 0 && err == io.EOF {
			break
		}
		lineNo++
		line = trimEOL(line)

		switch {
		case isBlank(line):
			if st.any {
				p, perr := st.finish(prefix, origin, in)
				if perr != nil {
					return nil, perr
				}
				pkgs = append(pkgs, p)
				st.reset()
			}
		case line[0] == ' ' || line[0] == '\t':
			if !st.any {
				return nil, &ParseError{lineNo, "continuation line outside a field"}
			}
			if st.cur != fNone {
				v := bytes.TrimSpace(line)
				// A lone "." marks an empty line in multi-line text; for
				// the fields kept here it carries nothing.
				if len(v) > 0 && !(len(v) == 1 && v[0] == '.') {
					if st.end[st.cur] > st.start[st.cur] {
						st.buf = append(st.buf, ' ')
					}
					st.buf = append(st.buf, v...)
					st.end[st.cur] = int32(len(st.buf))
				}
			}
		case line[0] == '#':
			// deb822 comment line.
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return nil, &ParseError{lineNo, fmt.Sprintf("expected \"Field: value\", got %q", truncate(line))}
			}
			name := line[:colon]
			if !st.any {
				st.any = true
				st.line = lineNo
			}
			f := lookupField(name)
			st.cur = f
			if f == fNone {
				if !validFieldName(name) {
					return nil, &ParseError{lineNo, fmt.Sprintf("invalid field name %q", truncate(name))}
				}
				break
			}
			if st.seen&(1<<f) != 0 {
				return nil, &ParseError{lineNo, fmt.Sprintf("duplicate field %s", fieldNames[f])}
			}
			st.seen |= 1 << f
			v := bytes.TrimSpace(line[colon+1:])
			st.start[f] = int32(len(st.buf))
			st.buf = append(st.buf, v...)
			st.end[f] = int32(len(st.buf))
		}
		if lastErr == io.EOF {
			break
		}
	}
	if st.any {
		p, err := st.finish(prefix, origin, in)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// finish turns the accumulated paragraph into a Package.
func (s *stanza) finish(prefix string, origin int, in *interner) (Package, error) {
	for _, f := range [...]field{fPackage, fVersion, fArchitecture, fFilename} {
		if s.seen&(1<<f) == 0 || s.end[f] == s.start[f] {
			return Package{}, &ParseError{s.line, fmt.Sprintf("paragraph has no %s field", fieldNames[f])}
		}
	}
	// The URL goes into the same allocation as the other values.
	urlStart := len(s.buf)
	s.buf = append(s.buf, prefix...)
	s.buf = append(s.buf, s.buf[s.start[fFilename]:s.end[fFilename]]...)
	text := string(s.buf)
	get := func(f field) string {
		if s.seen&(1<<f) == 0 {
			return ""
		}
		return text[s.start[f]:s.end[f]]
	}
	raw := func(f field) []byte {
		if s.seen&(1<<f) == 0 {
			return nil
		}
		return s.buf[s.start[f]:s.end[f]]
	}
	p := Package{
		Name:         get(fPackage),
		Version:      get(fVersion),
		Architecture: in.intern(raw(fArchitecture)),
		MultiArch:    in.intern(raw(fMultiArch)),
		Priority:     in.intern(raw(fPriority)),
		Section:      in.intern(raw(fSection)),
		Depends:      get(fDepends),
		PreDepends:   get(fPreDepends),
		Provides:     get(fProvides),
		Conflicts:    get(fConflicts),
		Breaks:       get(fBreaks),
		Replaces:     get(fReplaces),
		Recommends:   get(fRecommends),
		Filename:     get(fFilename),
		SHA256:       get(fSHA256),
		Origin:       origin,
	}
	p.URL = text[urlStart:]
	switch e := raw(fEssential); {
	case e == nil, string(e) == "no":
	case string(e) == "yes":
		p.Essential = true
	default:
		return Package{}, &ParseError{s.line, fmt.Sprintf("package %s: Essential: want yes or no, got %q", p.Name, e)}
	}
	var err error
	if b := raw(fSize); b != nil {
		if p.Size, err = parseSize(b); err != nil {
			return Package{}, &ParseError{s.line, fmt.Sprintf("package %s: Size: %v", p.Name, err)}
		}
	}
	if b := raw(fInstalledSize); b != nil {
		if p.InstalledSize, err = parseSize(b); err != nil {
			return Package{}, &ParseError{s.line, fmt.Sprintf("package %s: Installed-Size: %v", p.Name, err)}
		}
	}
	if p.SHA256 != "" && !isHex(p.SHA256, 64) {
		return Package{}, &ParseError{s.line, fmt.Sprintf("package %s: SHA256: not 64 hex digits: %q", p.Name, p.SHA256)}
	}
	return p, nil
}

var errNotNumber = errors.New("not a decimal number")

// parseSize parses a non-negative decimal without going through a string.
func parseSize(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: %q", errNotNumber, b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q", errNotNumber, b)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// isBlank reports whether a line separates paragraphs: empty or only blanks.
func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// interner shares the few distinct values of low-cardinality fields
// (Architecture, Section, …) across all packages.
type interner struct{ m map[string]string }

func newInterner() *interner { return &interner{m: make(map[string]string, 128)} }

func (in *interner) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	in.m[s] = s
	return s
}
