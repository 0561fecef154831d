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
	VMDK Source `json:"vmdk"`
}

func init() {
	Register("ova", func(o json.RawMessage) (Stage, error) {
		var s OVA
		if err := Decode(o, &s); err != nil {
			return nil, err
		}
		return &s, s.validate()
	})
}

func (s *OVA) validate() error {
	if err := checkFilename("filename", s.Filename); err != nil {
		return err
	}
	if err := s.VMDK.validate("vmdk"); err != nil {
		return err
	}
	if s.VMDK.Path == "/" {
		return fmt.Errorf("vmdk.path: names a directory, not a VMDK file")
	}
	if s.stem()+".ovf" == path.Base(s.VMDK.Path) || s.stem()+".mf" == path.Base(s.VMDK.Path) {
		return fmt.Errorf("vmdk.path: %s collides with the appliance's own files", path.Base(s.VMDK.Path))
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
	vmdk, fi, err := s.VMDK.sourceFile(env)
	if err != nil {
		return err
	}
	capacity, stream, err := vmdkInfo(vmdk)
	if err != nil {
		return fmt.Errorf("vmdk %s: %w", s.VMDK.Path, err)
	}
	if !stream {
		return fmt.Errorf("vmdk %s: not a streamOptimized VMDK, which an OVA needs", s.VMDK.Path)
	}
	diskName := path.Base(s.VMDK.Path)
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
		return fmt.Errorf("vmdk %s: %w", s.VMDK.Path, err)
	}
	ovfSum := sha256.Sum256(ovf.Bytes())
	ovfName, mfName := s.stem()+".ovf", s.stem()+".mf"
	mf := fmt.Sprintf("SHA256(%s)= %x\nSHA256(%s)= %s\n", ovfName, ovfSum, diskName, diskSum)
	files := []tarFile{
		{name: ovfName, data: ovf.Bytes(), mode: 0o644},
		{name: mfName, data: []byte(mf), mode: 0o644},
		{name: diskName, path: vmdk, mode: 0o644},
	}
	return writeOutput(env.Tree, s.Filename, func(w io.Writer) error {
		if err := writeFilesTar(ctx, w, files, env.SourceDateEpoch); err != nil {
			return fmt.Errorf("writing %s: %w", s.Filename, err)
		}
		return nil
	})
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
