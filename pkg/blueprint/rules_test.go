package blueprint

import (
	"strings"
	"testing"
)

// ruleCase is an input and the error text it must produce ("" for none).
type ruleCase struct {
	in, wantErr string
}

func runRule(t *testing.T, name string, rule func(string) error, cases []ruleCase) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		for _, c := range cases {
			err := rule(c.in)
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("%q: unexpected error %v", c.in, err)
			case c.wantErr != "" && err == nil:
				t.Errorf("%q: no error, want %q", c.in, c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Errorf("%q: error %q, want it to contain %q", c.in, err, c.wantErr)
			}
		}
	})
}

func matcher(re interface{ MatchString(string) bool }) func(string) error {
	return func(s string) error {
		if !re.MatchString(s) {
			return errNoMatch
		}
		return nil
	}
}

type noMatch struct{}

func (noMatch) Error() string { return "no match" }

var errNoMatch = noMatch{}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"20 GiB", 20 << 30, ""},
		{"20GiB", 20 << 30, ""},
		{" 512 MiB ", 512 << 20, ""},
		{"1 kB", 1000, ""},
		{"1 KiB", 1024, ""},
		{"3 MB", 3000000, ""},
		{"2 GB", 2000000000, ""},
		{"1 TB", 1000000000000, ""},
		{"1 TiB", 1 << 40, ""},
		{"1.5 GiB", 3 << 29, ""},
		{"0.5 kB", 500, ""},
		{"0.0005 kB", 1, ""}, // rounds half up
		{"1.5", 0, "must be an integer"},
		{"1 gib", 0, "unknown unit"},
		{"1 B", 0, "unknown unit"},
		{"1 PiB", 0, "unknown unit"},
		{"GiB", 0, "invalid size"},
		{"-1", 0, "invalid size"},
		{"", 0, "invalid size"},
		{"1e9", 0, "invalid size"},
		{"18446744073709551615", 1<<64 - 1, ""},
		{"18446744073709551616", 0, "too large"},
		{"16777216 TiB", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseSize(%q): %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseSize(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestRules(t *testing.T) {
	runRule(t, "firewall port", checkFirewallPort, []ruleCase{
		{"22:tcp", ""},
		{"53:udp", ""},
		{"8000-8080:udp", ""},
		{"30000-32767:tcp", ""},
		{"1:sctp", ""},
		{"65535:dccp", ""},
		{"imap:tcp", ""},
		{"ssh:tcp", ""},
		{"http-alt:tcp", ""},
		{"22", "want PORT:PROTOCOL"},
		{":tcp", "neither a port number nor a service name"},
		{"22:TCP", "protocol must be"},
		{"22:icmp", "protocol must be"},
		{"0:tcp", "out of range"},
		{"65536:tcp", "out of range"},
		{"80-22:tcp", "range ends before it starts"},
		{"80-:tcp", "neither a port number"},
		{"+22:tcp", "neither a port number"},
		{"22:tcp:udp", "want PORT:PROTOCOL"},
		{"9999999999999999999999:tcp", "neither a port number"},
	})
	runRule(t, "mode", checkMode, []ruleCase{
		{"", ""},
		{"0644", ""},
		{"644", ""},
		{"0", ""},
		{"4755", ""},
		{"07777", ""},
		{"0o644", "octal"},
		{"0888", "octal"},
		{"-644", "octal"},
		{"10000", "at most 07777"},
		{"017777", "octal"},
		{"rw-r--r--", "octal"},
	})
	hostname := func(s string) error { return checkHostname(s, 64) }
	runRule(t, "hostname", hostname, []ruleCase{
		{"ibuild-example", ""},
		{"web01.example.com", ""},
		{"A1", ""},
		{"1host", ""},
		{"", "empty"},
		{"-host", "starts or ends with '-'"},
		{"host-", "starts or ends with '-'"},
		{"host.", "empty label"},
		{"a..b", "empty label"},
		{"host_name", "only letters"},
		{"hôte", "only letters"},
		{strings.Repeat("a", 64), "label"},
		{strings.Repeat("a.", 32) + "a", "longer than 64"},
	})
	runRule(t, "absolute path", checkAbsPath, []ruleCase{
		{"/", ""},
		{"/etc/motd", ""},
		{"/srv/data.d/x..y", ""},
		{"", "required"},
		{"etc/motd", "not absolute"},
		{"./etc", "not absolute"},
		{"/etc/../root", `contains ".."`},
		{"/..", `contains ".."`},
		{"/etc/", "ends with a slash"},
		{"/etc//motd", "not clean"},
		{"/etc/./motd", "not clean"},
		{"/etc/\nmotd", "control characters"},
	})
	for _, p := range []struct {
		name  string
		rules []pathRule
		cases []ruleCase
	}{
		{"mountpoint policy", mountpointPolicy, []ruleCase{
			{"/", ""}, {"/var", ""}, {"/home", ""}, {"/boot", ""}, {"/usr", ""}, {"/var/lib/data", ""},
			{"/etc", "not allowed"}, {"/etc/x", "nothing under /etc"}, {"/usr/local", "only /usr itself"},
			{"/proc", "not allowed"}, {"/var/run/x", "nothing under /var/run"}, {"/lost+found", "not allowed"},
			{"/bin", "not allowed"}, {"/binx", ""},
		}},
		{"directory policy", directoryPolicy, []ruleCase{
			{"/etc/app", ""}, {"/srv/data", ""}, {"/usr/local/share/app", ""}, {"/var/lib/app", ""},
			{"/usr/share/app", "nothing under /usr"}, {"/boot/x", "nothing under /boot"}, {"/tmp", "not allowed"},
			{"/efi/x", "nothing under /efi"},
		}},
		{"file policy", filePolicy, []ruleCase{
			{"/etc/motd", ""}, {"/root/.bashrc", ""}, {"/usr/local/bin/tool", ""}, {"/etc/fstab.d", ""},
			{"/etc/fstab", "not allowed"}, {"/etc/passwd", "not allowed"}, {"/etc/shadow", "not allowed"},
			{"/etc/group", "not allowed"}, {"/usr/bin/x", "nothing under /usr"}, {"/var/tmp/x", "nothing under /var/tmp"},
		}},
	} {
		rules := p.rules
		runRule(t, p.name, func(s string) error { return checkPolicy(s, rules) }, p.cases)
	}
	runRule(t, "new user or group name", func(s string) error { return checkNewName("user", s) }, []ruleCase{
		{"admin", ""},
		{"_apt", ""},
		{"www-data", ""},
		{"user1", ""},
		{"machine$", ""},
		{strings.Repeat("a", 32), ""},
		{"", "required"},
		{strings.Repeat("a", 33), "longer than 32"},
		{"Admin", ""},
		{"john.doe", ""},
		{"1user", "what useradd accepts"},
		{"-user", "what useradd accepts"},
		{".user", "what useradd accepts"},
		{"us er", "what useradd accepts"},
		{"a$b", "what useradd accepts"},
	})
	runRule(t, "referenced name", func(s string) error { return checkRefName("group", s) }, []ruleCase{
		{"root", ""},
		{"Debian-exim", ""},
		{"systemd-journal", ""},
		{"user.name", ""},
		{"", "invalid"},
		{"-x", "invalid"},
		{"a b", "invalid"},
		{strings.Repeat("a", 33), "invalid"},
	})
	id := func(s string) error {
		var n int64
		for _, c := range strings.TrimPrefix(s, "-") {
			n = n*10 + int64(c-'0')
		}
		if strings.HasPrefix(s, "-") {
			n = -n
		}
		return checkID("uid", n)
	}
	runRule(t, "id", id, []ruleCase{
		{"0", ""}, {"1000", ""}, {"65534", ""}, {"65536", ""}, {"4294967294", ""},
		{"-1", "negative"}, {"65535", "reserved"}, {"4294967295", "larger than"},
	})
	runRule(t, "owner", func(s string) error {
		switch s {
		case "int":
			return checkOwner("user", 1000)
		case "int64":
			return checkOwner("user", int64(1000))
		case "negative":
			return checkOwner("user", int64(-1))
		case "float":
			return checkOwner("user", 1.0)
		case "nil":
			return checkOwner("user", nil)
		}
		return checkOwner("user", s)
	}, []ruleCase{
		{"nil", ""}, {"int", ""}, {"int64", ""}, {"root", ""},
		{"negative", "negative"}, {"float", "name or a numeric id"}, {"bad name", "invalid user name"},
	})
	runRule(t, "package", func(s string) error {
		name, version, _ := strings.Cut(s, "=")
		return checkPackage(name, version)
	}, []ruleCase{
		{"curl", ""},
		{"curl=7.88.*", ""},
		{"curl=*", ""},
		{"curl=7.88.1-10+deb12u5", ""},
		{"curl=1:2.3~rc1", ""},
		{"gcc-c++=4.?", ""},
		{"perl-Net_SSLeay", ""},
		{"libstdc++6", ""},
		{"=1.0", "required"},
		{"bad name", "invalid package name"},
		{"-curl", "invalid package name"},
		{"curl:amd64", "invalid package name"},
		{"curl=7.[0-9]", "invalid version"},
		{"curl=1 2", "invalid version"},
		{"curl=.1", "invalid version"},
	})
	runRule(t, "ssh keys", checkSSHKeys, []ruleCase{
		{exampleKey, ""},
		{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQVJX0mmiKz3kyXWivsBeF1A25YJ0vikv6hZQTtwF6n", ""},
		{exampleKey + "\n\n# comment\n" + exampleKey + "\n", ""},
		{`no-pty,from="192.0.2.1" ` + exampleKey, ""},
		{"", "no SSH public key"},
		{"# only a comment", "no SSH public key"},
		{"PUBLIC SSH KEY", "not an SSH public key"},
		{"ssh-ed25519", "no key data"},
		{"ssh-ed25519 !!!", "not valid base64"},
		{"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDQVJX0mmiKz3kyXWivsBeF1A25YJ0vikv6hZQTtwF6n", "does not match its type ssh-rsa"},
		{"ssh-ed25519 AAAA", "truncated"},
		{"ssh-ed25519 AAAAAQ==", "does not match"},
		{exampleKey + "\nnot a key", "line 2 is not an SSH public key"},
	})
	runRule(t, "zone source", checkZoneSource, []ruleCase{
		{"192.0.2.1", ""}, {"192.0.2.0/24", ""}, {"2001:db8::/32", ""}, {"2001:db8::1", ""},
		{"00:11:22:33:44:55", ""}, {"ipset:blocklist", ""},
		{"192.0.2.0/33", "invalid source"}, {"example.com", "invalid source"}, {"ipset:", "invalid ipset"},
	})
	runRule(t, "unit", checkUnit, []ruleCase{
		{"ssh", ""}, {"ssh.service", ""}, {"getty@ttyS0.service", ""}, {"cockpit.socket", ""},
		{"systemd-fsck@dev-disk-by\\x2dlabel-root.service", ""},
		{"", "invalid unit"}, {"a/b", "invalid unit"}, {"a b", "invalid unit"}, {strings.Repeat("a", 256), "invalid unit"},
	})
	runRule(t, "url", checkURL, []ruleCase{
		{"https://example.com/debian", ""}, {"http://192.0.2.1:8080/repo", ""}, {"file:///srv/repo", ""},
		{"ftp://ftp.example.com/pub", ""},
		{"example.com/debian", "scheme must be"}, {"https:///x", "no host"}, {"file:relative", "absolute path"},
		{"mirror://x", "scheme must be"}, {"https://exa mple.com", "invalid URL"},
	})
	runRule(t, "gpg key", checkGPGKey, []ruleCase{
		{"https://example.com/key.asc", ""},
		{"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----\n", ""},
		{"not a key", "neither"},
		{"-----BEGIN PGP PUBLIC KEY BLOCK-----\nunterminated", "neither"},
	})
	runRule(t, "pem certs", checkPEMCerts, []ruleCase{
		{"", "no PEM certificate"},
		{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM block 1"},
		{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a CERTIFICATE"},
	})
	runRule(t, "timezone", matcher(timezoneRE), []ruleCase{
		{"UTC", ""}, {"Europe/Berlin", ""}, {"America/Argentina/Buenos_Aires", ""}, {"Etc/GMT+5", ""},
		{"America/Port-au-Prince", ""}, {"US/Eastern", ""},
		{"", "no match"}, {"Europe/../Berlin", "no match"}, {"/Europe/Berlin", "no match"}, {"Europe/", "no match"},
		{"Europe Berlin", "no match"}, {"-UTC", "no match"},
	})
	runRule(t, "locale", matcher(localeRE), []ruleCase{
		{"en_US.UTF-8", ""}, {"C.UTF-8", ""}, {"C", ""}, {"POSIX", ""}, {"de_DE", ""}, {"sr_RS@latin", ""},
		{"ca_ES.UTF-8@valencia", ""}, {"es_419.UTF-8", ""}, {"ast_ES.UTF-8", ""}, {"en_US.ISO-8859-15", ""},
		{"english", "no match"}, {"en-US", "no match"}, {"en_US.UTF 8", "no match"}, {"", "no match"},
	})
	runRule(t, "semver", matcher(semverRE), []ruleCase{
		{"0.0.1", ""}, {"1.2.3-rc.1+build.5", ""}, {"10.20.30", ""},
		{"1.0", "no match"}, {"v1.0.0", "no match"}, {"1.0.0-", "no match"}, {"", "no match"},
	})
	runRule(t, "distro", matcher(distroRE), []ruleCase{
		{"debian-12", ""}, {"debian-13", ""}, {"rhel-9.4", ""}, {"fedora-40", ""}, {"centos-stream-9", ""},
		{"Debian-12", "no match"}, {"debian 12", "no match"}, {"debian-", "no match"}, {"-12", "no match"},
	})
}

func TestEditDistanceAndSuggest(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"name", "name", 0}, {"nmae", "name", 1}, {"hostnme", "hostname", 1},
		{"shel", "shell", 1}, {"abc", "xyz", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	names := []string{"name", "hostname", "user", "group"}
	for in, want := range map[string]string{"nmae": "name", "Hostname": "hostname", "usr": "user", "whatever": "", "grp": ""} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
