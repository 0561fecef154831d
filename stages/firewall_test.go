package stages_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestFirewallValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"ports":["22:tcp","8000-8080:udp","5000:sctp"],"enabled_services":["ssh"],"disabled_services":["dhcpv6-client"]}`, ""},
		{`{}`, ""},
		{`{"ports":["imap:tcp","domain:udp"]}`, ""},
		{`{"ports":["imap"]}`, `ports[0]: "imap" is not "port:protocol"`},
		{`{"ports":["22"]}`, `ports[0]: "22" is not "port:protocol"`},
		{`{"ports":["22/tcp"]}`, `ports[0]: "22/tcp" is not "port:protocol"`},
		{`{"ports":["22:icmp"]}`, `ports[0]: "22:icmp" is not`},
		{`{"ports":["0:tcp"]}`, `ports[0]: "0:tcp" is not a port or range within 1-65535`},
		{`{"ports":["70000:tcp"]}`, `is not a port or range`},
		{`{"ports":["90-80:tcp"]}`, `is not a port or range`},
		{`{"enabled_services":["ssh;reboot"]}`, `enabled_services[0]: "ssh;reboot" is not a firewalld service name`},
		{`{"enabled_services":["--zone=x"]}`, `enabled_services[0]: "--zone=x" is not a firewalld service name`},
		{`{"enabled_services":["ssh"],"disabled_services":["ssh"]}`, `disabled_services[0]: ssh is already listed in enabled_services[0]`},
		{`{"zone":"public"}`, `unknown field "zone"`},
		{`{"zones":[{"name":"trusted","sources":["192.0.2.0/24","2001:db8::1","52:54:00:12:34:56","ipset:office"]},{"sources":["10.0.0.1"]}]}`, ""},
		{`{"zones":[{"name":"trusted"}]}`, `zones[0].sources: a zone needs sources`},
		{`{"zones":[{"name":"--x","sources":["10.0.0.1"]}]}`, `zones[0].name: "--x" is not a firewalld zone name`},
		{`{"zones":[{"name":"a","sources":["10.0.0.1;x"]}]}`, `zones[0].sources[0]: "10.0.0.1;x" is not`},
	}
	for _, tc := range tests {
		_, err := stages.New("firewall", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(firewall, %s) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestFirewallNoFirewalld(t *testing.T) {
	root := tcEmptyTree(t)
	err := tcStage(t, "firewall", `{"ports":["22:tcp"]}`).Run(context.Background(), tcEnv(t, root))
	if err == nil || !strings.Contains(err.Error(), "install the firewalld package") {
		t.Errorf("tree without firewalld: %v", err)
	}
}

func TestFirewallRun(t *testing.T) {
	root := tcDebianTree(t)
	env := tcEnv(t, root)
	options := `{"ports":["22:tcp","8000-8080:udp"],"enabled_services":["http","https"],"disabled_services":["dhcpv6-client"]}`
	tcRun(t, env, "firewall", options)
	zone := tcRead(t, root, "/etc/firewalld/zones/public.xml")
	for _, want := range []string{`<service name="http"/>`, `<service name="https"/>`,
		`<port port="22" protocol="tcp"/>`, `<port port="8000-8080" protocol="udp"/>`} {
		if !strings.Contains(zone, want) {
			t.Errorf("public.xml lacks %s:\n%s", want, zone)
		}
	}
	if strings.Contains(zone, "dhcpv6-client") {
		t.Errorf("public.xml still has dhcpv6-client:\n%s", zone)
	}
	// Running again is harmless and leaves no backups.
	tcRun(t, env, "firewall", options)
	if got := tcRead(t, root, "/etc/firewalld/zones/public.xml"); got != zone {
		t.Errorf("second run changed public.xml:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/firewalld/zones/public.xml.old")); err == nil {
		t.Error("public.xml.old left in the tree")
	}

	err := tcStage(t, "firewall", `{"enabled_services":["ssh","no-such-service"]}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), `enabled_services[1]: service "no-such-service" is not defined in the tree's firewalld`) {
		t.Errorf("unknown service: %v", err)
	}
	// A port by its /etc/services name, as composer's blueprints have it.
	err = tcStage(t, "firewall", `{"ports":["no-such-port:tcp"]}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), `ports[0]: "no-such-port:tcp": the tree's /etc/services has no no-such-port/tcp`) {
		t.Errorf("unknown port name: %v", err)
	}
	tcRun(t, env, "firewall", `{"ports":["imap:tcp"]}`)
	if zone := tcRead(t, root, "/etc/firewalld/zones/public.xml"); !strings.Contains(zone, `<port port="imap" protocol="tcp"/>`) && !strings.Contains(zone, `<port port="143" protocol="tcp"/>`) {
		t.Errorf("public.xml lacks the imap port:\n%s", zone)
	}
	os.Remove(filepath.Join(root, "etc/protocols"))
	err = tcStage(t, "firewall", `{"ports":["443:tcp"]}`).Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "install the netbase package") {
		t.Errorf("tree without /etc/protocols: %v", err)
	}
}
