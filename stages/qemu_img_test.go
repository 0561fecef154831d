package stages_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQemuImgValidate(t *testing.T) {
	const src = `"source":{"pipeline":"image","path":"/disk.raw"}`
	tests := []struct{ options, err string }{
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"compat":"1.1"},"compress":false}`, ""},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"compat":"1.1","cluster_size":"64k"},"compress":true}`, ""},
		{`{"filename":"disk.vmdk","format":"vmdk",` + src + `,"options":{"subformat":"streamOptimized","adapter_type":"lsilogic"}}`, ""},
		{`{"filename":"disk.vhd","format":"vpc",` + src + `,"options":{"subformat":"fixed","force_size":"on"}}`, ""},
		{`{"filename":"disk.vhd","format":"vpc",` + src + `}`, ""},
		{`{"filename":"disk.img","format":"raw",` + src + `}`, `format: "raw" is not qcow2, vmdk or vpc`},
		{`{"filename":"disk.vhd","format":"vhd",` + src + `}`, `format: "vhd"`},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"compat":"2"}}`, `options.compat: "2" is not one of 0.10, 1.1`},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"cluster_size":"64k,preallocation=full"}}`, `options.cluster_size: "64k,preallocation=full" is not a number`},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"preallocation":"full"}}`, "options.preallocation: not an option of qcow2 here"},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"subformat":"fixed"}}`, "options.subformat: not an option of qcow2"},
		{`{"filename":"disk.vmdk","format":"vmdk",` + src + `,"options":{"subformat":"monolithicFlat"}}`, `options.subformat: "monolithicFlat" is not one of`},
		{`{"filename":"disk.vmdk","format":"vmdk",` + src + `,"compress":true}`, "compress: only qcow2"},
		{`{"filename":"disk.vhd","format":"vpc",` + src + `,"options":{"force_size":"yes"}}`, `options.force_size: "yes"`},
		{`{"filename":"disk.qcow2","format":"qcow2"}`, "source.pipeline: empty"},
		{`{"filename":"d/disk.qcow2","format":"qcow2",` + src + `}`, "filename:"},
		{`{"filename":"disk.qcow2","format":"qcow2",` + src + `,"options":{"compat":1.1}}`, "decoding options"},
	}
	imgValidate(t, "qemu-img", tests)
}

// imgRawImage writes a raw image of size bytes with some data into a new
// directory and returns the directory.
func imgRawImage(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{0, 1 << 20, 17<<20 + 512, size - 4096} {
		if _, err := f.WriteAt([]byte(strings.Repeat(string(rune('a'+i)), 4096)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

type imgQemuInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	FormatSpecific struct {
		Type string `json:"type"`
		Data struct {
			Compat          string `json:"compat"`
			CreateType      string `json:"create-type"`
			CompressionType string `json:"compression-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

func TestQemuImgRun(t *testing.T) {
	imgNeedRoot(t)
	imgNeedTools(t, "qemu-img")
	const rawSize = 40<<20 + 3*512 // not a whole MiB
	image := imgRawImage(t, rawSize)
	raw := filepath.Join(image, "disk.raw")
	tests := []struct {
		name, filename, format, options string
		compress                        bool
		check                           func(t *testing.T, info imgQemuInfo, p string)
	}{
		{"qcow2", "disk.qcow2", "qcow2", `{"compat":"1.1"}`, false, func(t *testing.T, info imgQemuInfo, p string) {
			if info.FormatSpecific.Data.Compat != "1.1" || info.VirtualSize != rawSize {
				t.Errorf("info: %+v", info)
			}
		}},
		{"qcow2 compressed", "disk.qcow2", "qcow2", `{"compat":"1.1"}`, true, nil},
		{"vmdk", "disk.vmdk", "vmdk", `{"subformat":"streamOptimized"}`, false, func(t *testing.T, info imgQemuInfo, p string) {
			if info.FormatSpecific.Data.CreateType != "streamOptimized" {
				t.Errorf("info: %+v", info)
			}
			b, _ := os.ReadFile(p)
			if !strings.Contains(string(b[:4096]), `RW 81923 SPARSE "disk.vmdk"`) {
				t.Errorf("descriptor does not name disk.vmdk:\n%s", b[512:1024])
			}
		}},
		{"vhd fixed", "disk.vhd", "vpc", `{"subformat":"fixed","force_size":"on"}`, false, func(t *testing.T, info imgQemuInfo, p string) {
			if info.VirtualSize != 41<<20 {
				t.Errorf("virtual size %d, want %d (rounded up to 1 MiB)", info.VirtualSize, 41<<20)
			}
			fi, _ := os.Stat(p)
			if fi.Size() != 41<<20+512 {
				t.Errorf("file size %d, want %d", fi.Size(), 41<<20+512)
			}
			imgCheckVHDFooter(t, p, fi.Size()-512)
		}},
		{"vhd dynamic", "disk.vhd", "vpc", `{"subformat":"dynamic"}`, false, func(t *testing.T, info imgQemuInfo, p string) {
			fi, _ := os.Stat(p)
			imgCheckVHDFooter(t, p, 0)
			imgCheckVHDFooter(t, p, fi.Size()-512)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := `{"filename":"` + tc.filename + `","format":"` + tc.format + `","source":{"pipeline":"image","path":"/disk.raw"},"options":` + tc.options + `,"compress":` + map[bool]string{true: "true", false: "false"}[tc.compress] + `}`
			var sums []string
			for run := 0; run < 2; run++ {
				env := imgEnv(t, map[string]string{"image": image})
				start := time.Now()
				imgRun(t, env, "qemu-img", opts)
				t.Logf("%s of a 40 MiB raw: %v", tc.name, time.Since(start).Round(time.Millisecond))
				imgLeftovers(t, env.Tree, tc.filename)
				p := filepath.Join(env.Tree, tc.filename)
				sums = append(sums, imgSHA256(t, p))
				if run > 0 {
					continue
				}
				var info imgQemuInfo
				if err := json.Unmarshal([]byte(imgCmd(t, "qemu-img", "info", "--output=json", "-f", tc.format, p)), &info); err != nil {
					t.Fatal(err)
				}
				if info.Format != tc.format {
					t.Errorf("qemu-img info: format %q", info.Format)
				}
				if tc.format != "vpc" {
					imgCmd(t, "qemu-img", "check", "-q", "-f", tc.format, p)
				}
				// Same contents (qemu-img compare treats a longer image's
				// tail of zeros as equal).
				imgCmd(t, "qemu-img", "compare", "-q", "-f", "raw", "-F", tc.format, raw, p)
				if tc.check != nil {
					tc.check(t, info, p)
				}
			}
			if sums[0] != sums[1] {
				t.Errorf("two runs differ: %s %s", sums[0], sums[1])
			}
		})
	}
}

// imgCheckVHDFooter checks the footer at off: the epoch as time stamp, a
// version 4 UUID, a valid checksum.
func imgCheckVHDFooter(t *testing.T, p string, off int64) {
	t.Helper()
	f := imgReadRange(t, p, off, 512)
	if string(f[:8]) != "conectix" {
		t.Fatalf("no footer at %d", off)
	}
	if got := binary.BigEndian.Uint32(f[24:]); got != imgEpoch-946684800 {
		t.Errorf("time stamp %d, want %d", got, imgEpoch-946684800)
	}
	if f[68+6]>>4 != 4 || f[68+8]>>6 != 2 {
		t.Errorf("UUID % x is not version 4", f[68:84])
	}
	want := binary.BigEndian.Uint32(f[64:])
	var c uint32
	for i, b := range f {
		if i < 64 || i >= 68 {
			c += uint32(b)
		}
	}
	if ^c != want {
		t.Errorf("checksum %08x, want %08x", want, ^c)
	}
}
