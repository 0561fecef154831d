package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// QemuImg converts a raw disk image with the build root's qemu-img:
// qcow2, VMDK or VHD ("vpc"). The identifiers qemu-img makes up (a VMDK's
// CID, a VHD's time stamp and UUID) are replaced by values derived from
// the contents and the epoch, so equal inputs give equal files.
type QemuImg struct {
	// Filename is the converted image's name in the output directory.
	Filename string `json:"filename"`
	// Format is "qcow2", "vmdk" or "vpc".
	Format string `json:"format"`
	// Source is the raw image.
	Source Source `json:"source"`
	// Options are qemu-img's -o options for the format.
	Options map[string]string `json:"options"`
	// Compress compresses qcow2 clusters (-c).
	Compress bool `json:"compress"`
}

// qemuImgOptions are the -o options each format accepts here, with their
// allowed values (nil: any number). Options that make more than one
// file (monolithicFlat VMDKs) or preallocate are left out.
var qemuImgOptions = map[string]map[string][]string{
	"qcow2": {
		"compat":           {"0.10", "1.1"},
		"cluster_size":     nil,
		"lazy_refcounts":   {"on", "off"},
		"refcount_bits":    nil,
		"compression_type": {"zlib", "zstd"},
	},
	"vmdk": {
		"subformat":    {"monolithicSparse", "streamOptimized"},
		"adapter_type": {"ide", "lsilogic", "buslogic", "legacyESX"},
		"hwversion":    nil,
		"compat6":      {"on", "off"},
	},
	"vpc": {
		"subformat":  {"fixed", "dynamic"},
		"force_size": {"on", "off"},
	},
}

var qemuImgNumber = regexp.MustCompile(`^[0-9]+[kKmM]?$`)

func init() { register[QemuImg]("qemu-img", 1) }

func (s *QemuImg) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	known, ok := qemuImgOptions[s.Format]
	if !ok {
		return fmt.Errorf("format: %q is not qcow2, vmdk or vpc", s.Format)
	}
	if err := s.Source.validate("source"); err != nil {
		return err
	}
	for _, k := range sortedKeys(s.Options) {
		v := s.Options[k]
		allowed, ok := known[k]
		if !ok {
			return fmt.Errorf("options.%s: not an option of %s here (known: %s)", k, s.Format, strings.Join(sortedKeys(known), ", "))
		}
		if allowed == nil {
			if !qemuImgNumber.MatchString(v) {
				return fmt.Errorf("options.%s: %q is not a number", k, v)
			}
			continue
		}
		found := false
		for _, a := range allowed {
			found = found || a == v
		}
		if !found {
			return fmt.Errorf("options.%s: %q is not one of %s", k, v, strings.Join(allowed, ", "))
		}
	}
	if s.Compress && s.Format != "qcow2" {
		return fmt.Errorf("compress: only qcow2 compresses on request (a streamOptimized VMDK always is)")
	}
	return nil
}

// vhdAlign is the size a VHD's virtual disk is rounded up to (Azure's
// requirement, harmless elsewhere).
const vhdAlign = 1 << 20

// Run converts into a temporary directory, makes the identifiers
// reproducible and renames the file into place.
func (s *QemuImg) Run(ctx context.Context, env *Env) error {
	src, fi, err := s.Source.sourceFile(env)
	if err != nil {
		return err
	}
	if err := needTools(env, "qemu-img"); err != nil {
		return err
	}
	// The file gets its final name in a directory of its own: a VMDK
	// names itself in its descriptor.
	tmp, err := outputTemp(env.Tree, "qemu-img")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	input := src
	if s.Format == "vpc" && fi.Size()%vhdAlign != 0 {
		input = filepath.Join(tmp, ".padded.raw")
		if err := padCopy(src, input, (fi.Size()+vhdAlign-1)/vhdAlign*vhdAlign); err != nil {
			return fmt.Errorf("rounding %s up to 1 MiB: %w", s.Source.Path, err)
		}
	}
	args := []string{"qemu-img", "convert", "-q", "-f", "raw", "-O", s.Format}
	var opts []string
	for _, k := range sortedKeys(s.Options) {
		opts = append(opts, k+"="+s.Options[k])
	}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	if s.Compress {
		args = append(args, "-c")
	}
	args = append(args, path.Join(inMount, "source.raw"), path.Join(outMount, s.Filename))
	binds := []Bind{{Src: input, Dst: path.Join(inMount, "source.raw"), ReadOnly: true}, {Src: tmp, Dst: outMount}}
	if err := runTool(ctx, env, binds, nil, toolIO{}, args...); err != nil {
		return err
	}
	out := filepath.Join(tmp, s.Filename)
	switch s.Format {
	case "vmdk":
		err = patchVMDK(out)
	case "vpc":
		err = patchVHD(out, env.SourceDateEpoch)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.Filename, err)
	}
	if err := os.Rename(out, filepath.Join(env.Tree, s.Filename)); err != nil {
		return fmt.Errorf("writing %s: %w", s.Filename, err)
	}
	return nil
}

// padCopy makes a sparse copy of src at dst, extended to size.
func padCopy(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := copySparse(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// vmdkCID is the content ID line; qemu-img writes it without leading
// zeros.
var vmdkCID = regexp.MustCompile(`(?m)^CID=([0-9a-fA-F]{1,8})$`)

// patchVMDK replaces the random content ID in a VMDK's embedded descriptor
// with one derived from the file's contents (the descriptor left out).
func patchVMDK(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := make([]byte, sectorSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("reading VMDK header: %w", err)
	}
	if string(hdr[:4]) != "KDMV" {
		return fmt.Errorf("not a sparse VMDK (magic %q)", hdr[:4])
	}
	descOff := int64(binary.LittleEndian.Uint64(hdr[28:])) * sectorSize
	descSize := int64(binary.LittleEndian.Uint64(hdr[36:])) * sectorSize
	if descOff == 0 || descSize == 0 || descSize > 1<<20 {
		return fmt.Errorf("VMDK has no embedded descriptor")
	}
	desc := make([]byte, descSize)
	if _, err := f.ReadAt(desc, descOff); err != nil {
		return fmt.Errorf("reading VMDK descriptor: %w", err)
	}
	text := desc
	if i := bytes.IndexByte(desc, 0); i >= 0 {
		text = desc[:i]
	}
	m := vmdkCID.FindSubmatchIndex(text)
	if m == nil {
		return fmt.Errorf("VMDK descriptor has no CID")
	}
	sum, err := contentDigest(f, fi.Size(), [][2]int64{{descOff, descSize}})
	if err != nil {
		return err
	}
	cid := hex.EncodeToString(sum[:4])
	if cid == "ffffffff" { // "no parent" in parentCID
		cid = "fffffffe"
	}
	newText := slices.Concat(text[:m[2]], []byte(cid), text[m[3]:])
	if int64(len(newText)) >= descSize {
		return fmt.Errorf("VMDK descriptor is full")
	}
	newDesc := make([]byte, descSize)
	copy(newDesc, newText)
	if _, err := f.WriteAt(newDesc, descOff); err != nil {
		return err
	}
	return f.Close()
}

// vhdEpoch is where VHD time stamps count from (2000-01-01 00:00:00 UTC).
const vhdEpoch = 946684800

// patchVHD sets a VHD footer's time stamp to the epoch and its UUID to one
// derived from the contents, and fixes its checksum; a dynamic VHD's copy
// of the footer at offset 0 gets the same.
func patchVHD(p string, epoch int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size < sectorSize {
		return fmt.Errorf("VHD of %d bytes has no footer", size)
	}
	footer := make([]byte, sectorSize)
	if _, err := f.ReadAt(footer, size-sectorSize); err != nil {
		return fmt.Errorf("reading VHD footer: %w", err)
	}
	if string(footer[:8]) != "conectix" {
		return fmt.Errorf("no VHD footer (cookie %q)", footer[:8])
	}
	copies := []int64{size - sectorSize}
	head := make([]byte, sectorSize)
	if _, err := f.ReadAt(head, 0); err == nil && string(head[:8]) == "conectix" {
		copies = append(copies, 0) // dynamic and differencing disks
	}
	var skip [][2]int64
	for _, off := range copies {
		skip = append(skip, [2]int64{off, sectorSize})
	}
	sum, err := contentDigest(f, size, skip)
	if err != nil {
		return err
	}
	stamp := max(epoch-vhdEpoch, 0)
	binary.BigEndian.PutUint32(footer[24:], uint32(stamp))
	id := footer[68:84]
	copy(id, sum[:16])
	id[6] = id[6]&0x0f | 0x40 // an RFC 4122 version 4 / variant 1 layout
	id[8] = id[8]&0x3f | 0x80
	clear(footer[64:68])
	var c uint32
	for _, b := range footer {
		c += uint32(b)
	}
	binary.BigEndian.PutUint32(footer[64:], ^c)
	for _, off := range copies {
		if _, err := f.WriteAt(footer, off); err != nil {
			return err
		}
	}
	return f.Close()
}

// vmdkInfo reads a sparse VMDK's header: its virtual size in bytes
// and whether it is stream-optimized.
func vmdkInfo(p string) (capacity int64, stream bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	hdr := make([]byte, sectorSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return 0, false, fmt.Errorf("reading VMDK header: %w", err)
	}
	if string(hdr[:4]) != "KDMV" {
		return 0, false, fmt.Errorf("not a sparse VMDK (magic %q)", hdr[:4])
	}
	capacity = int64(binary.LittleEndian.Uint64(hdr[12:])) * sectorSize
	descOff := int64(binary.LittleEndian.Uint64(hdr[28:])) * sectorSize
	descSize := int64(binary.LittleEndian.Uint64(hdr[36:])) * sectorSize
	if descOff > 0 && descSize > 0 && descSize <= 1<<20 {
		desc := make([]byte, descSize)
		if _, err := f.ReadAt(desc, descOff); err == nil {
			stream = bytes.Contains(desc, []byte(`createType="streamOptimized"`))
		}
	}
	return capacity, stream, nil
}
