package stages_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOVAValidate(t *testing.T) {
	tests := []struct{ options, err string }{
		{`{"filename":"image.ova","vmdk":{"pipeline":"vmdk-intermediate","path":"/disk.vmdk"}}`, ""},
		{`{"filename":"image.ova"}`, "vmdk.pipeline: empty"},
		{`{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/"}}`, "vmdk.path: names a directory"},
		{`{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/image.ovf"}}`, "collides"},
		{`{"filename":"","vmdk":{"pipeline":"vmdk","path":"/disk.vmdk"}}`, "filename: empty"},
		{`{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/disk.vmdk"},"memory":4096}`, `unknown field "memory"`},
		{`{"filename":"image.ova","vmdk":{"pipeline":"vmdk","path":"/disk.vmdk","size":1}}`, `unknown field "size"`},
		{`{"filename":"image.ova","vmdk":"disk.vmdk"}`, ""},
		{`{"filename":"image.ova","vmdk":"image.ova"}`, "the appliance's own name"},
		{`{"filename":"image.ova","vmdk":"image.mf"}`, "collides"},
		{`{"filename":"image.ova","vmdk":"sub/disk.vmdk"}`, "must be a base name"},
		{`{"filename":"image.ova","vmdk":7}`, "cannot unmarshal number"},
	}
	imgValidate(t, "ova", tests)
}

// imgOVFEnvelope is what the test reads back from the OVF.
type imgOVFEnvelope struct {
	XMLName    xml.Name `xml:"http://schemas.dmtf.org/ovf/envelope/1 Envelope"`
	References struct {
		File struct {
			Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
			Size int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 size,attr"`
		} `xml:"File"`
	} `xml:"References"`
	Disk struct {
		Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
		Format   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 format,attr"`
	} `xml:"DiskSection>Disk"`
	VirtualSystem struct {
		Name  string `xml:"Name"`
		Items []struct {
			ResourceType    int    `xml:"ResourceType"`
			ResourceSubType string `xml:"ResourceSubType"`
			VirtualQuantity int    `xml:"VirtualQuantity"`
			HostResource    string `xml:"HostResource"`
			Parent          int    `xml:"Parent"`
			InstanceID      int    `xml:"InstanceID"`
		} `xml:"VirtualHardwareSection>Item"`
	} `xml:"VirtualSystem"`
}

func TestOVARun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "qemu-img")
	const rawSize = 40 << 20
	image := imgRawImage(t, rawSize)
	vmdkEnv := imgEnv(t, map[string]string{"image": image})
	imgRun(t, vmdkEnv, "qemu-img", `{"filename":"disk.vmdk","format":"vmdk","source":{"pipeline":"image","path":"/disk.raw"},"options":{"subformat":"streamOptimized"}}`)
	vmdk := filepath.Join(vmdkEnv.Tree, "disk.vmdk")
	vmdkData, err := os.ReadFile(vmdk)
	if err != nil {
		t.Fatal(err)
	}

	const opts = `{"filename":"appliance.ova","vmdk":{"pipeline":"vmdk-intermediate","path":"/disk.vmdk"}}`
	env := imgEnv(t, map[string]string{"vmdk-intermediate": vmdkEnv.Tree})
	imgRun(t, env, "ova", opts)
	imgLeftovers(t, env.Tree, "appliance.ova")
	ova := filepath.Join(env.Tree, "appliance.ova")
	f, err := os.Open(ova)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdrs, data := imgTarHeaders(t, f)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != imgEpoch || h.Uname != "" {
			t.Errorf("%s: header %+v", h.Name, h)
		}
	}
	if got := strings.Join(names, " "); got != "appliance.ovf appliance.mf disk.vmdk" {
		t.Errorf("members %q, want ovf, mf, vmdk", got)
	}
	raw, _ := os.ReadFile(ova)
	if string(raw[257:265]) != "ustar\x0000" {
		t.Errorf("first member is not ustar: %q", raw[257:265])
	}
	if !bytes.Equal(data["disk.vmdk"], vmdkData) {
		t.Errorf("vmdk differs from the source")
	}

	var env1 imgOVFEnvelope
	if err := xml.Unmarshal(data["appliance.ovf"], &env1); err != nil {
		t.Fatalf("OVF: %v\n%s", err, data["appliance.ovf"])
	}
	if env1.References.File.Href != "disk.vmdk" || env1.References.File.Size != int64(len(vmdkData)) {
		t.Errorf("References: %+v", env1.References)
	}
	if env1.Disk.Capacity != rawSize || !strings.HasSuffix(env1.Disk.Format, "#streamOptimized") {
		t.Errorf("Disk: %+v", env1.Disk)
	}
	if env1.VirtualSystem.Name != "appliance" {
		t.Errorf("name %q", env1.VirtualSystem.Name)
	}
	kinds := map[int]int{}
	var disk, ctrl int
	for _, it := range env1.VirtualSystem.Items {
		kinds[it.ResourceType]++
		if it.ResourceType == 17 {
			disk = it.Parent
			if it.HostResource != "ovf:/disk/vmdisk1" {
				t.Errorf("disk host resource %q", it.HostResource)
			}
		}
		if it.ResourceType == 20 {
			ctrl = it.InstanceID
		}
	}
	if kinds[3] != 1 || kinds[4] != 1 || kinds[20] != 1 || kinds[17] != 1 || kinds[10] != 1 || disk != ctrl {
		t.Errorf("hardware items: %v, disk on %d, controller %d", kinds, disk, ctrl)
	}

	ovfSum := sha256.Sum256(data["appliance.ovf"])
	vmdkSum := sha256.Sum256(vmdkData)
	wantMF := fmt.Sprintf("SHA256(appliance.ovf)= %s\nSHA256(disk.vmdk)= %s\n", hex.EncodeToString(ovfSum[:]), hex.EncodeToString(vmdkSum[:]))
	if string(data["appliance.mf"]) != wantMF {
		t.Errorf("manifest:\n%s\nwant:\n%s", data["appliance.mf"], wantMF)
	}

	env2 := imgEnv(t, map[string]string{"vmdk-intermediate": vmdkEnv.Tree})
	imgRun(t, env2, "ova", opts)
	if a, b := imgSHA256(t, ova), imgSHA256(t, filepath.Join(env2.Tree, "appliance.ova")); a != b {
		t.Errorf("two runs differ")
	}

	// The VMDK an earlier stage of the same pipeline wrote: packed, then
	// removed, leaving the appliance alone; the same bytes.
	local := imgEnv(t, nil)
	if err := os.WriteFile(filepath.Join(local.Tree, "disk.vmdk"), vmdkData, 0o644); err != nil {
		t.Fatal(err)
	}
	imgRun(t, local, "ova", `{"filename":"appliance.ova","vmdk":"disk.vmdk"}`)
	imgLeftovers(t, local.Tree, "appliance.ova")
	if a, b := imgSHA256(t, ova), imgSHA256(t, filepath.Join(local.Tree, "appliance.ova")); a != b {
		t.Errorf("the appliance of a local VMDK differs from the one of an input's")
	}
	if err := imgRunErr(t, local, "ova", `{"filename":"again.ova","vmdk":"disk.vmdk"}`); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing local VMDK: %v", err)
	}

	// A VMDK an OVA cannot carry.
	imgRun(t, vmdkEnv, "qemu-img", `{"filename":"sparse.vmdk","format":"vmdk","source":{"pipeline":"image","path":"/disk.raw"},"options":{"subformat":"monolithicSparse"}}`)
	err = imgRunErr(t, env2, "ova", `{"filename":"appliance.ova","vmdk":{"pipeline":"vmdk-intermediate","path":"/sparse.vmdk"}}`)
	if err == nil || !strings.Contains(err.Error(), "not a streamOptimized VMDK") {
		t.Errorf("monolithicSparse VMDK: %v", err)
	}
	env2.Inputs["image"] = image
	err = imgRunErr(t, env2, "ova", `{"filename":"appliance.ova","vmdk":{"pipeline":"image","path":"/disk.raw"}}`)
	if err == nil || !strings.Contains(err.Error(), "not a sparse VMDK") {
		t.Errorf("raw disk as VMDK: %v", err)
	}
}
