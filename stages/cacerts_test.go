package stages_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/stages"
)

// tcCA is a self-signed CA made for these tests (openssl req -x509).
const tcCA = `-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUV0ToJIkzFUmvdQYmzPDYlsD01YswCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOaWJ1aWxkLXRlc3QtY2EwIBcNMjYxMjA1MjMyNDExWhgPMjEy
NjExMTEyMzI0MTFaMBkxFzAVBgNVBAMMDmlidWlsZC10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEUmRswza4lVJTWE1K/BJG1jzqJszuFEp17Fkae4E3
pF9PqZXAKLftgafuttN7aZhYVsUJf6uQF0sPqRoDZ1QmCKNTMFEwHQYDVR0OBBYE
FN5VYsIpP/dF8fDmpXgkWUALoPr7MB8GA1UdIwQYMBaAFN5VYsIpP/dF8fDmpXgk
WUALoPr7MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgb8NKi+7t
OOKbbTV0k4RjtIIF8AnSG7N1oPOhf5lqQnUCIQCngIkzbVPsCp/XW6bnEGujMmsb
zbdK4xbN25i2BUQZNw==
-----END CERTIFICATE-----
`

func TestCACertsValidate(t *testing.T) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	tests := []struct{ options, err string }{
		{`{"certs":[` + q(tcCA) + `]}`, ""},
		{`{"certs":[` + q(tcCA+tcCA) + `]}`, ""},
		{`{}`, "certs: no certificate given"},
		{`{"certs":["hello"]}`, "certs[0]: no PEM certificate found"},
		{`{"certs":[` + q(strings.Replace(tcCA, "CERTIFICATE", "PRIVATE KEY", 2)) + `]}`, `certs[0]: PEM block 1 is a "PRIVATE KEY"`},
		{`{"certs":[` + q(tcCA) + `],"path":"/x"}`, `unknown field "path"`},
	}
	for _, tc := range tests {
		_, err := stages.New("cacerts", json.RawMessage(tc.options))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("New(cacerts, %.60s…) = %v, want error %q", tc.options, err, tc.err)
		}
	}
}

func TestCACertsNeedsTheTool(t *testing.T) {
	root := tcEmptyTree(t)
	q, _ := json.Marshal(tcCA)
	err := tcStage(t, "cacerts", `{"certs":[`+string(q)+`]}`).Run(context.Background(), tcEnv(t, root))
	if err == nil || !strings.Contains(err.Error(), "install the ca-certificates package") {
		t.Errorf("Run without update-ca-certificates: %v", err)
	}
}
