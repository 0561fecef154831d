package blueprint

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Syntax rules for the values of a blueprint. Each returns nil or an error
// whose text completes "field: ...".

var (
	// What Debian's useradd and groupadd accept (shadow's is_valid_name,
	// less a leading digit or dot, which the users stage refuses), for the
	// users and groups a blueprint creates: "john.doe" and "Admin" are
	// fine.
	newNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)
	// Names of existing users and groups referred to (file owners,
	// supplementary groups): composer's rule, which admits system
	// accounts such as Debian-exim.
	refNameRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$`)

	packageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._-]*$`)
	// Package names in packages and modules may be globs, as DNF takes
	// them ("python3-*").
	// "@name" is a group and "@name:stream" a module stream, as DNF
	// takes them in composer's package lists.
	packageGlobRE = regexp.MustCompile(`^(?:[A-Za-z0-9*?\[][A-Za-z0-9+._*?\[\]-]*|@[A-Za-z0-9][A-Za-z0-9+._ -]*(?::[A-Za-z0-9._+-]+)?)$`)
	// Versions (Debian and RPM characters) with the * and ? wildcards.
	versionGlobRE   = regexp.MustCompile(`^[A-Za-z0-9*?][A-Za-z0-9.+~:_^*?-]*$`)
	semverRE        = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$`)
	distroRE        = regexp.MustCompile(`^[a-z][a-z0-9]*(?:-[a-z0-9][a-z0-9._]*)*$`)
	archRE          = regexp.MustCompile(`^[a-z0-9_]+$`)
	timezoneRE      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_+-]*)*$`)
	localeRE        = regexp.MustCompile(`^(?:[a-z]{2,3}(?:_[A-Z]{2}|_[0-9]{3})?|C|POSIX)(?:\.[A-Za-z0-9-]+)?(?:@[A-Za-z0-9]+)?$`)
	keyboardRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	unitRE          = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+$`)
	fwServiceRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
	fwPortNameRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.+-]*$`)
	fwZoneRE        = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	ipsetRE         = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	firstbootNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	repoIDRE        = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	repoFileRE      = regexp.MustCompile(`^[\w.-]{1,250}\.repo$`)
	suiteRE         = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	componentRE     = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	lvmNameRE       = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$`)
	volumeIDRE      = regexp.MustCompile(`^[\w._$-]+$`)
	dosPartTypeRE   = regexp.MustCompile(`^[0-9a-fA-F]{2}$`)
	uuidRE          = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// maxID is the largest usable uid or gid: (uid_t)-1 means "no change".
const maxID = 4294967294

func checkNewName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is required", kind)
	case len(name) > 32:
		return fmt.Errorf("%s name %q is longer than 32 characters", kind, name)
	case !newNameRE.MatchString(name):
		return fmt.Errorf("invalid %s name %q: use letters, digits, '_', '.' and '-', starting with a letter or '_' (what useradd accepts)", kind, name)
	}
	return nil
}

func checkRefName(kind, name string) error {
	if !refNameRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: use up to 32 letters, digits, '_', '.' and '-', not starting with '-'", kind, name)
	}
	return nil
}

func checkID(kind string, id int64) error {
	switch {
	case id < 0:
		return fmt.Errorf("%s %d is negative", kind, id)
	case id > maxID:
		return fmt.Errorf("%s %d is larger than %d", kind, id, maxID)
	case id == 65535:
		return fmt.Errorf("%s 65535 is reserved ((uint16)-1)", kind)
	}
	return nil
}

// checkOwner checks a file or directory owner: nil, a name or an id.
func checkOwner(kind string, v any) error {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return checkRefName(kind, x)
	case int64:
		return checkID(kind+" id", x)
	case int:
		return checkID(kind+" id", int64(x))
	default:
		return fmt.Errorf("%s must be a name or a numeric id, got %T", kind, v)
	}
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// checkAbsPath checks that p is an absolute, clean path inside the image.
func checkAbsPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is required")
	case hasControl(p):
		return fmt.Errorf("path %q contains control characters", p)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute", p)
	case slicesContains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("path %q contains \"..\"", p)
	case len(p) > 1 && strings.HasSuffix(p, "/"):
		return fmt.Errorf("path %q ends with a slash", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (did you mean %q?)", p, path.Clean(p))
	}
	return nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// pathRule is one entry of composer's path policies: the longest matching
// prefix decides; Deny refuses the path and everything under it, Exact
// allows only the path itself.
type pathRule struct {
	prefix      string
	deny, exact bool
}

func deny(p string) pathRule { return pathRule{prefix: p, deny: true} }

// Composer's policies (osbuild/images pkg/policies) for mountpoints,
// custom directories and custom files.
var (
	mountpointPolicy = []pathRule{
		{prefix: "/"}, deny("/etc"), {prefix: "/usr", exact: true},
		deny("/sys"), deny("/proc"), deny("/dev"), deny("/run"),
		deny("/bin"), deny("/sbin"), deny("/lib"), deny("/lib64"),
		deny("/lost+found"), deny("/sysroot"), deny("/var/run"), deny("/var/lock"),
	}
	directoryPolicy = []pathRule{
		{prefix: "/"}, deny("/bin"), deny("/boot"), deny("/dev"), deny("/lib"),
		deny("/lib64"), deny("/lost+found"), deny("/proc"), deny("/run"),
		deny("/sbin"), deny("/sys"), deny("/sysroot"), deny("/tmp"),
		deny("/usr"), {prefix: "/usr/local"}, deny("/var/run"), deny("/var/tmp"),
		deny("/efi"),
	}
	filePolicy = append(append([]pathRule(nil), directoryPolicy...),
		deny("/etc/fstab"), deny("/etc/group"), deny("/etc/passwd"), deny("/etc/shadow"))
)

func checkPolicy(p string, rules []pathRule) error {
	var best *pathRule
	for i := range rules {
		r := &rules[i]
		if r.prefix == "/" || p == r.prefix || strings.HasPrefix(p, r.prefix+"/") {
			if best == nil || len(r.prefix) > len(best.prefix) {
				best = r
			}
		}
	}
	switch {
	case best == nil:
		return nil
	case best.deny && p == best.prefix:
		return fmt.Errorf("%q is not allowed", p)
	case best.deny:
		return fmt.Errorf("%q is not allowed: nothing under %s may be customized", p, best.prefix)
	case best.exact && p != best.prefix:
		return fmt.Errorf("%q is not allowed: only %s itself may be used", p, best.prefix)
	}
	return nil
}

// checkMode checks an octal permission string such as "0644".
func checkMode(m string) error {
	if m == "" {
		return nil
	}
	if len(m) > 5 || strings.Trim(m, "01234567") != "" {
		return fmt.Errorf("invalid mode %q: must be an octal number such as \"0644\"", m)
	}
	n, err := strconv.ParseUint(m, 8, 32)
	if err != nil || n > 0o7777 {
		return fmt.Errorf("invalid mode %q: must be at most 07777", m)
	}
	return nil
}

// checkHostname applies RFC 1123 with Linux's 64-character limit on the
// host name (HOST_NAME_MAX) or the DNS limit of 253 for other host names.
func checkHostname(h string, max int) error {
	if h == "" {
		return errors.New("host name is empty")
	}
	if len(h) > max {
		return fmt.Errorf("host name %q is longer than %d characters", h, max)
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" {
			return fmt.Errorf("invalid host name %q: empty label", h)
		}
		if len(l) > 63 {
			return fmt.Errorf("invalid host name %q: label %q is longer than 63 characters", h, l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("invalid host name %q: label %q starts or ends with '-'", h, l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("invalid host name %q: only letters, digits, '-' and '.' are allowed", h)
			}
		}
	}
	return nil
}

func checkPackage(name, version string) error {
	if name == "" {
		return errors.New("package name is required")
	}
	if !packageGlobRE.MatchString(name) {
		return fmt.Errorf("invalid package name %q", name)
	}
	if version != "" && !versionGlobRE.MatchString(version) {
		return fmt.Errorf("invalid version %q for package %s: want a version or a glob using * and ?", version, name)
	}
	return nil
}

// checkFirewallPort checks "port:proto" and "from-to:proto", where a
// port is a number or an /etc/services name (as osbuild's firewall stage).
func checkFirewallPort(s string) error {
	spec, proto, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(proto, ":") {
		return fmt.Errorf("invalid port %q: want PORT:PROTOCOL or FROM-TO:PROTOCOL", s)
	}
	switch proto {
	case "tcp", "udp", "sctp", "dccp":
	default:
		return fmt.Errorf("invalid port %q: protocol must be tcp, udp, sctp or dccp", s)
	}
	if fwPortNameRE.MatchString(spec) {
		return nil
	}
	from, to, isRange := strings.Cut(spec, "-")
	lo, err := portNumber(from)
	if err != nil {
		return fmt.Errorf("invalid port %q: %w", s, err)
	}
	if isRange {
		hi, err := portNumber(to)
		if err != nil {
			return fmt.Errorf("invalid port %q: %w", s, err)
		}
		if hi < lo {
			return fmt.Errorf("invalid port %q: range ends before it starts", s)
		}
	}
	return nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is neither a port number nor a service name", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return n, nil
}

func checkZoneSource(s string) error {
	if name, ok := strings.CutPrefix(s, "ipset:"); ok {
		if !ipsetRE.MatchString(name) {
			return fmt.Errorf("invalid ipset name %q", name)
		}
		return nil
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if _, err := net.ParseMAC(s); err == nil {
		return nil
	}
	return fmt.Errorf("invalid source %q: want an address, a network, a MAC address or ipset:NAME", s)
}

var unitSuffixes = []string{".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer", ".slice", ".scope"}

// unitName returns the full unit name: a name without a unit suffix is a
// service.
func unitName(s string) string {
	for _, suf := range unitSuffixes {
		if strings.HasSuffix(s, suf) {
			return s
		}
	}
	return s + ".service"
}

func checkUnit(s string) error {
	if s == "" || len(s) > 255 || !unitRE.MatchString(s) {
		return fmt.Errorf("invalid unit name %q", s)
	}
	return nil
}

var sshKeyTypes = map[string]bool{
	"ssh-ed25519":                        true,
	"ssh-rsa":                            true,
	"ssh-dss":                            true,
	"ecdsa-sha2-nistp256":                true,
	"ecdsa-sha2-nistp384":                true,
	"ecdsa-sha2-nistp521":                true,
	"sk-ssh-ed25519@openssh.com":         true,
	"sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// checkSSHKeys checks one or more authorized_keys lines: each names a key
// type followed by base64 key data whose embedded type matches.
func checkSSHKeys(s string) error {
	n := 0
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		fields := strings.Fields(line)
		k := -1
		for j, f := range fields {
			if sshKeyTypes[f] {
				k = j
				break
			}
		}
		if k < 0 {
			return fmt.Errorf("line %d is not an SSH public key (want \"ssh-ed25519 AAAA... comment\")", i+1)
		}
		if k+1 >= len(fields) {
			return fmt.Errorf("line %d: SSH key has no key data", i+1)
		}
		blob, err := base64.StdEncoding.DecodeString(fields[k+1])
		if err != nil {
			return fmt.Errorf("line %d: SSH key data is not valid base64", i+1)
		}
		if len(blob) < 4 {
			return fmt.Errorf("line %d: SSH key data is truncated", i+1)
		}
		l := binary.BigEndian.Uint32(blob)
		if uint64(l) > uint64(len(blob)-4) || string(blob[4:4+l]) != fields[k] {
			return fmt.Errorf("line %d: SSH key data does not match its type %s", i+1, fields[k])
		}
	}
	if n == 0 {
		return errors.New("no SSH public key given")
	}
	return nil
}

// checkPEMCerts checks a bundle of PEM certificates.
func checkPEMCerts(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", n+1, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("PEM block %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return errors.New("text after the last PEM certificate")
	}
	return nil
}

// checkURL accepts absolute URLs of the schemes package managers fetch.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https", "ftp":
		if u.Host == "" {
			return fmt.Errorf("invalid URL %q: no host", s)
		}
	case "file":
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("invalid URL %q: file URLs need an absolute path", s)
		}
	default:
		return fmt.Errorf("invalid URL %q: scheme must be http, https, ftp or file", s)
	}
	return nil
}

// checkFileURI accepts what composer's files[].uri takes: an absolute
// path or a file, http or https URL.
func checkFileURI(s string) error {
	if strings.HasPrefix(s, "/") {
		return checkAbsPath(s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "file" && u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("invalid uri %q: want an absolute path or a file, http or https URL", s)
	}
	return checkURL(s)
}

// checkGPGKey accepts what composer does: an ASCII-armored public key or
// a URL.
func checkGPGKey(s string) error {
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN PGP PUBLIC KEY BLOCK-----") &&
		strings.Contains(s, "-----END PGP PUBLIC KEY BLOCK-----") {
		return nil
	}
	if _, err := url.ParseRequestURI(s); err == nil && !hasControl(s) {
		return nil
	}
	return errors.New("GPG key is neither an ASCII-armored public key nor a URL")
}
