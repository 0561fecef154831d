package cloudapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

func testConverter(t *testing.T) *converter {
	t.Helper()
	defs, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	return &converter{defs: defs, uploadDefaults: upload.Options{Bucket: "images", Endpoint: "http://127.0.0.1:1"}}
}

// Every composer name in the document's enum maps to an image type the
// image definitions have, and so does every one of ours in it.
func TestImageTypesResolve(t *testing.T) {
	c := testConverter(t)
	d, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	d12, _ := c.defs.Distro("debian-12")
	for _, v := range d.Components.Schemas["ImageTypes"].Value.Enum {
		if _, err := c.image(d12, "image_request", "x86_64", ImageTypes(v.(string)), nil); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
}

func TestConvertV2(t *testing.T) {
	c := testConverter(t)
	var req ComposeRequest
	body := `{
	  "distribution": "debian-12",
	  "image_requests": [{"architecture": "x86_64", "image_type": "guest-image", "size": 4294967296,
	    "upload_options": {"region": "us-east-1"},
	    "repositories": [{"baseurl": "https://archive.example/debian", "suites": ["bookworm"]}]}],
	  "customizations": {
	    "packages": ["cockpit", "firewalld"],
	    "users": [{"name": "admin", "ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtoOFzvjVzzx7KUafdY5IEXqpdzwHQQA2vnA1iAAAnT admin", "groups": ["sudo"]}],
	    "files": [{"path": "/usr/local/bin/start.sh", "mode": "0755", "data": "#!/bin/sh\necho hi\n", "user": "root", "group": 0}],
	    "services": {"enabled": ["cockpit.socket"]},
	    "firewall": {"ports": ["9090:tcp"], "services": {"enabled": ["http"]}},
	    "filesystem": [{"mountpoint": "/var", "min_size": 1073741824}],
	    "custom_repositories": [{"id": "extra", "baseurl": ["https://extra.example/debian"]}],
	    "payload_repositories": [{"baseurl": "https://payload.example/debian", "suites": ["bookworm"], "components": ["main", "contrib"]}]
	  }
	}`
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	sub, err := c.v2(&req)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Distro != "debian-12" || len(sub.Images) != 1 {
		t.Fatalf("%+v", sub)
	}
	img := sub.Images[0]
	if img.Arch != "x86_64" || img.Type != "qcow2" || img.Size != 4294967296 {
		t.Errorf("image %+v", img)
	}
	if img.Upload == nil || img.Upload.Target != "aws.s3" || img.Upload.Options.Region != "us-east-1" || img.Upload.Options.Bucket != "images" {
		t.Errorf("upload %+v", img.Upload)
	}
	// aws.s3 honours image_name.
	var named ComposeRequest
	if err := json.Unmarshal([]byte(`{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "guest-image",
		"upload_options": {"image_name": "web-1.qcow2"}}}`), &named); err != nil {
		t.Fatal(err)
	}
	if sub, err := c.v2(&named); err != nil || sub.Images[0].Upload == nil || sub.Images[0].Upload.Target != "aws.s3" || sub.Images[0].Upload.Options.ImageName != "web-1.qcow2" {
		t.Errorf("aws.s3 with image_name: %v %+v", err, sub)
	}
	if len(sub.Repositories) != 1 || sub.Repositories[0].BaseURLs[0] != "https://archive.example/debian" || !sub.Repositories[0].InstallFrom {
		t.Errorf("repositories %+v", sub.Repositories)
	}
	bp := sub.Blueprint
	var names []string
	for _, p := range bp.Packages {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"cockpit", "firewalld"}, names); diff != "" {
		t.Error(diff)
	}
	cu := bp.Customizations
	if len(cu.User) != 1 || *cu.User[0].Key != "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtoOFzvjVzzx7KUafdY5IEXqpdzwHQQA2vnA1iAAAnT admin" {
		t.Errorf("users %+v", cu.User)
	}
	if len(cu.Files) != 1 || cu.Files[0].Mode != "0755" || cu.Files[0].User != "root" || cu.Files[0].Group != int64(0) {
		t.Errorf("files %+v", cu.Files)
	}
	if cu.Filesystem[0].MinSize != 1<<30 || cu.Services.Enabled[0] != "cockpit.socket" || cu.Firewall.Ports[0] != "9090:tcp" {
		t.Errorf("customizations %+v", cu)
	}
	if r := cu.Repositories; len(r) != 2 || !r[0].InstallFrom || r[0].ResolveOnly || r[0].BaseURLs[0] != "https://extra.example/debian" {
		t.Errorf("custom repositories %+v", r)
	}
	// Payload repositories are resolved against, not written into the
	// image.
	if r := cu.Repositories; len(r) != 2 || r[1].InstallFrom || !r[1].ResolveOnly || r[1].BaseURLs[0] != "https://payload.example/debian" ||
		fmt.Sprint(r[1].Components) != "[main contrib]" {
		t.Errorf("payload repositories %+v", r)
	}
	if !strings.Contains(string(sub.BlueprintJSON), `"install_from":true`) {
		t.Errorf("blueprint text %s", sub.BlueprintJSON)
	}
}

func TestConvertErrors(t *testing.T) {
	c := testConverter(t)
	for _, tc := range []struct {
		name, body, field string
		code              int
	}{
		{"distro", `{"distribution": "fedora-39", "image_request": {"architecture": "x86_64", "image_type": "qcow2"}}`, "distribution", codeDistribution},
		{"no image", `{"distribution": "debian-12"}`, "image_requests", codeValidation},
		{"file repo", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"custom_repositories": [{"id": "x", "baseurl": ["file:///etc"]}]}}`, "customizations.custom_repositories[0].baseurl[0]", codeRepository},
		{"file key", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"custom_repositories": [{"id": "x", "baseurl": ["http://a.example/"], "gpgkey": ["/etc/shadow"]}]}}`, "customizations.custom_repositories[0].gpgkey[0]", codeRepository},
		{"file base repo", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2",
			"repositories": [{"baseurl": "file:///srv/debian"}]}}`, "image_request.repositories[0].baseurl", codeRepository},
		{"blueprint file uri", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"blueprint": {"name": "x", "customizations": {"files": [{"path": "/etc/x", "uri": "file:///etc/shadow"}]}}}`, "blueprint.customizations.files[0].uri", codeValidation},
		{"bad mode", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"files": [{"path": "/etc/x", "mode": "999"}]}}`, "customizations.files[0].mode", codeCustomizations},
		{"bad user", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"users": [{"name": "root:x"}]}}`, "customizations.users[0].name", codeCustomizations},
		{"bad minsize", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"filesystem": [{"mountpoint": "var", "min_size": 1}]}}`, "customizations.filesystem[0].mountpoint", codeCustomizations},
		{"payload repo from RHSM", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"payload_repositories": [{"baseurl": "http://a.example/", "rhsm": true}]}}`, "customizations.payload_repositories[0].rhsm", codeRepository},
		{"payload repo components without suites", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2"},
			"customizations": {"custom_repositories": [{"id": "extra", "baseurl": ["https://extra.example/debian"]}],
			"payload_repositories": [{"baseurl": "http://a.example/"}, {"baseurl": "http://b.example/", "components": ["main"]}]}}`, "customizations.payload_repositories[1].components", codeCustomizations},
		{"AMI name EC2 refuses", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "aws",
			"upload_options": {"image_name": "x"}}}`, "image_request.upload_options.image_name", codeValidation},
		{"azure image name Azure refuses", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "azure",
			"upload_options": {"image_name": "web-"}}}`, "image_request.upload_options.image_name", codeValidation},
		{"gcp image name GCE refuses", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "gcp",
			"upload_options": {"image_name": "Web_1"}}}`, "image_request.upload_options.image_name", codeValidation},
		{"s3 image name with a path", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2",
			"upload_options": {"image_name": "../x"}}}`, "image_request.upload_options.image_name", codeValidation},
		{"snapshot name", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "qcow2",
			"upload_options": {"snapshot_name": "x"}}}`, "image_request.upload_options.snapshot_name", codeValidation},
		{"s3 on gcp", `{"distribution": "debian-12", "image_request": {"architecture": "x86_64", "image_type": "gcp",
			"upload_options": {"public": true}}}`, "image_request.upload_options.public", codeValidation},
		{"two repos", `{"distribution": "debian-12", "image_requests": [{"architecture": "x86_64", "image_type": "qcow2"},
			{"architecture": "x86_64", "image_type": "raw", "repositories": [{"baseurl": "http://a.example/"}]}]}`, "image_requests[1].repositories", codeValidation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req ComposeRequest
			if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			_, err := c.v2(&req)
			ae, ok := err.(*apiError)
			if !ok {
				t.Fatalf("err = %v (%T), want an *apiError", err, err)
			}
			if ae.Field != tc.field || ae.Code != tc.code || ae.Status != 400 {
				t.Errorf("got field %q code %d status %d (%v), want field %q code %d", ae.Field, ae.Code, ae.Status, ae, tc.field, tc.code)
			}
		})
	}
}

func TestConvertV1(t *testing.T) {
	c := testConverter(t)
	var req ComposeRequestV1
	body := `{"distribution": "debian-12", "image_name": "web", "image_description": "a web server",
	  "image_requests": [{"architecture": "x86_64", "image_type": "guest-image", "upload_request": {"type": "aws.s3", "options": {}}}],
	  "customizations": {"packages": ["npm"]}}`
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	sub, err := c.v1(&req)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Blueprint.Name != "web" || sub.Blueprint.Description != "a web server" || sub.Images[0].Upload.Target != "aws.s3" || sub.Images[0].Type != "qcow2" {
		t.Errorf("%+v %+v", sub.Blueprint, sub.Images)
	}
}

// Two image requests of one compose may not upload under one name the
// user chose on one target: their uploads run at once and would overwrite
// each other's objects. Where the target's resource differs (another
// region, resource group or aws.s3 file extension), the name is free.
func TestConvertUniqueImageNames(t *testing.T) {
	c := testConverter(t)
	c.uploadDefaults = upload.Options{Bucket: "images", Endpoint: "http://127.0.0.1:1", Project: "p",
		SubscriptionID: "s", ResourceGroup: "rg", Location: "westeurope", StorageAccount: "acct"}
	req := func(a, b string) string {
		return `{"distribution": "debian-12", "image_requests": [` + a + `, ` + b + `]}`
	}
	for _, tc := range []struct {
		name, body, field string
	}{
		{"gcp, two arches", req(`{"architecture": "x86_64", "image_type": "gcp", "upload_options": {"image_name": "myimg"}}`,
			`{"architecture": "aarch64", "image_type": "gcp", "upload_options": {"image_name": "myimg"}}`),
			"image_requests[1].upload_options.image_name"},
		{"azure", req(`{"architecture": "x86_64", "image_type": "azure", "upload_options": {"image_name": "web"}}`,
			`{"architecture": "x86_64", "image_type": "azure", "size": 8589934592, "upload_options": {"image_name": "web"}}`),
			"image_requests[1].upload_options.image_name"},
		{"aws, one region", req(`{"architecture": "x86_64", "image_type": "aws", "upload_options": {"image_name": "web-1", "region": "eu-west-1"}}`,
			`{"architecture": "aarch64", "image_type": "aws", "upload_options": {"image_name": "web-1", "region": "eu-west-1"}}`),
			"image_requests[1].upload_options.image_name"},
		{"aws.s3, one key", req(`{"architecture": "x86_64", "image_type": "guest-image", "upload_options": {"image_name": "web"}}`,
			`{"architecture": "aarch64", "image_type": "guest-image", "upload_targets": [{"type": "aws.s3", "upload_options": {"image_name": "web"}}]}`),
			"image_requests[1].upload_targets[0].upload_options.image_name"},
		{"aws.s3, other extension", req(`{"architecture": "x86_64", "image_type": "guest-image", "upload_options": {"image_name": "web"}}`,
			`{"architecture": "x86_64", "image_type": "minimal-raw", "upload_options": {"image_name": "web"}}`), ""},
		{"aws, other regions", req(`{"architecture": "x86_64", "image_type": "aws", "upload_options": {"image_name": "web-1", "region": "eu-west-1"}}`,
			`{"architecture": "x86_64", "image_type": "aws", "upload_options": {"image_name": "web-1", "region": "us-east-1"}}`), ""},
		{"azure, other resource groups", req(`{"architecture": "x86_64", "image_type": "azure", "upload_options": {"image_name": "web"}}`,
			`{"architecture": "x86_64", "image_type": "azure", "upload_options": {"image_name": "web", "resource_group": "rg2"}}`), ""},
		{"one name, other targets", req(`{"architecture": "x86_64", "image_type": "gcp", "upload_options": {"image_name": "web"}}`,
			`{"architecture": "x86_64", "image_type": "azure", "upload_options": {"image_name": "web"}}`), ""},
		{"derived names", req(`{"architecture": "x86_64", "image_type": "gcp", "upload_options": {}}`,
			`{"architecture": "aarch64", "image_type": "gcp", "upload_options": {}}`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r ComposeRequest
			if err := json.Unmarshal([]byte(tc.body), &r); err != nil {
				t.Fatal(err)
			}
			_, err := c.v2(&r)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			ae, ok := err.(*apiError)
			if !ok {
				t.Fatalf("err = %v (%T), want an *apiError", err, err)
			}
			if ae.Field != tc.field || ae.Code != codeValidation || ae.Status != 400 || !strings.Contains(ae.Msg, "image_requests[0]") {
				t.Errorf("got field %q code %d status %d (%v), want field %q", ae.Field, ae.Code, ae.Status, ae, tc.field)
			}
		})
	}
}
