package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"
)

// OVA packs a stream-optimized VMDK as an OVF 1.0 appliance: the OVF
// envelope (a virtual machine with 2 CPUs, 2 GiB of memory, the disk on a
// SATA AHCI controller and an E1000 network adapter, BIOS firmware), a
// manifest with the SHA-256 of both, and the disk, in a tar in that
// order, as VMware and VirtualBox import it.
type OVA struct {
	// Filename is the appliance's name in the output directory
	// ("image.ova"); its stem names the virtual machine, the .ovf and
	// the .mf.
	Filename string `json:"filename"`
	// VMDK is the stream-optimized disk (made by the qemu-img stage).
	VMDK OVADisk `json:"vmdk"`
}

// OVADisk names the VMDK an appliance packs: a file of an earlier
// pipeline ({"pipeline": "vmdk", "path": "/disk.vmdk"}), or, written as a
// plain string ("disk.vmdk"), a file an earlier stage of the same pipeline
// left in the output directory. The appliance holds the disk, so such a
// local file is removed once packed: the pipeline's output is the OVA
// alone.
type OVADisk struct {
	Source
	// File is the local file's name; empty when Source is used.
	File string
}

// UnmarshalJSON takes a string (File) or a source object, strictly.
func (d *OVADisk) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &d.File)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(&d.Source)
}

// name is the VMDK's base name, as the appliance stores it.
func (d *OVADisk) name() string {
	if d.File != "" {
		return d.File
	}
	return path.Base(d.Path)
}

func init() { register[OVA]("ova", 1) }

func (s *OVA) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	field := "vmdk"
	if s.VMDK.File != "" {
		if err := checkFilename(field, s.VMDK.File); err != nil {
			return err
		}
		if s.VMDK.File == s.Filename {
			return fmt.Errorf("vmdk: %q is the appliance's own name", s.VMDK.File)
		}
	} else {
		field = "vmdk.path"
		if err := s.VMDK.validate("vmdk"); err != nil {
			return err
		}
		if s.VMDK.Path == "/" {
			return fmt.Errorf("vmdk.path: names a directory, not a VMDK file")
		}
	}
	if n := s.VMDK.name(); s.stem()+".ovf" == n || s.stem()+".mf" == n {
		return fmt.Errorf("%s: %s collides with the appliance's own files", field, n)
	}
	return nil
}

// stem is the appliance's name without ".ova".
func (s *OVA) stem() string {
	if st := strings.TrimSuffix(s.Filename, ".ova"); st != "" {
		return st
	}
	return s.Filename
}

// ovfParams fill ovfTemplate.
type ovfParams struct {
	Name, DiskFile       string
	DiskSize, Capacity   int64
	CPUs, MemoryMiB      int
	OSID                 int
	VMwareOS, SystemType string
}

// ovfTemplate is the envelope; ids and element names are fixed, so equal
// disks give equal envelopes.
var ovfTemplate = template.Must(template.New("ovf").Funcs(template.FuncMap{"x": xmlText}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{{x .DiskFile}}" ovf:id="file1" ovf:size="{{.DiskSize}}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{{.Capacity}}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{{x .Name}}">
    <Info>A virtual machine</Info>
    <Name>{{x .Name}}</Name>
    <OperatingSystemSection ovf:id="{{.OSID}}" vmw:osType="{{.VMwareOS}}">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{{x .Name}}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>{{.SystemType}}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{{.CPUs}} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.CPUs}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{{.MemoryMiB}}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.MemoryMiB}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>ethernet0</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`))

func xmlText(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Run writes the appliance under a temporary name and renames it into
// place.
func (s *OVA) Run(ctx context.Context, env *Env) error {
	vmdk, fi, err := s.vmdkFile(env)
	if err != nil {
		return err
	}
	diskName := s.VMDK.name()
	capacity, stream, err := vmdkInfo(vmdk)
	if err != nil {
		return fmt.Errorf("vmdk %s: %w", diskName, err)
	}
	if !stream {
		return fmt.Errorf("vmdk %s: not a streamOptimized VMDK, which an OVA needs", diskName)
	}
	var ovf bytes.Buffer
	err = ovfTemplate.Execute(&ovf, ovfParams{
		Name: s.stem(), DiskFile: diskName, DiskSize: fi.Size(), Capacity: capacity,
		CPUs: 2, MemoryMiB: 2048,
		// CIM "Linux 64-Bit" / VMware's generic 64-bit Linux.
		OSID: 101, VMwareOS: "otherLinux64Guest", SystemType: "vmx-13",
	})
	if err != nil {
		return fmt.Errorf("writing OVF envelope: %w", err)
	}
	diskSum, err := fileSHA256(vmdk)
	if err != nil {
		return fmt.Errorf("vmdk %s: %w", diskName, err)
	}
	ovfSum := sha256.Sum256(ovf.Bytes())
	ovfName, mfName := s.stem()+".ovf", s.stem()+".mf"
	mf := fmt.Sprintf("SHA256(%s)= %x\nSHA256(%s)= %s\n", ovfName, ovfSum, diskName, diskSum)
	files := []tarFile{
		{name: ovfName, data: ovf.Bytes(), mode: 0o644},
		{name: mfName, data: []byte(mf), mode: 0o644},
		{name: diskName, path: vmdk, mode: 0o644},
	}
	err = writeOutput(env.Tree, s.Filename, func(w io.Writer) error {
		if err := writeFilesTar(ctx, w, files, env.SourceDateEpoch); err != nil {
			return fmt.Errorf("writing %s: %w", s.Filename, err)
		}
		return nil
	})
	if err != nil || s.VMDK.File == "" {
		return err
	}
	if err := os.Remove(vmdk); err != nil {
		return fmt.Errorf("removing the packed %s: %w", diskName, err)
	}
	return nil
}

// vmdkFile finds the VMDK: in an earlier pipeline or in the output
// directory.
func (s *OVA) vmdkFile(env *Env) (string, os.FileInfo, error) {
	if s.VMDK.File == "" {
		return s.VMDK.sourceFile(env)
	}
	p := filepath.Join(env.Tree, s.VMDK.File)
	fi, err := os.Lstat(p)
	if err != nil {
		return "", nil, fmt.Errorf("vmdk %s: %w", s.VMDK.File, err)
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("vmdk %s: not a regular file", s.VMDK.File)
	}
	return p, fi, nil
}

// fileSHA256 is the hex SHA-256 of a file's contents.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
