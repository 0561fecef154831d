package stages_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/stages"
)

func TestKernelArgs(t *testing.T) {
	tests := []struct {
		cmdline string
		args    []string // as written
		values  []string // what the kernel receives
		err     string
	}{
		{"", nil, nil, ""},
		{" quiet  ro ", []string{"quiet", "ro"}, []string{"quiet", "ro"}, ""},
		{`quiet console="ttyS0"`, []string{"quiet", `console="ttyS0"`}, []string{"quiet", "console=ttyS0"}, ""},
		{`console="ttyS0,115200"`, []string{`console="ttyS0,115200"`}, []string{"console=ttyS0,115200"}, ""},
		{`dyndbg="file drivers/usb/* +p" quiet`, []string{`dyndbg="file drivers/usb/* +p"`, "quiet"}, []string{"dyndbg=file drivers/usb/* +p", "quiet"}, ""},
		{`"dyndbg=module nvme +p"`, []string{`"dyndbg=module nvme +p"`}, []string{"dyndbg=module nvme +p"}, ""},
		{`a="b`, nil, nil, "the double quote is not closed"},
		{`a=b"c d"`, nil, nil, "the kernel keeps other quotes"},
		{`a="b"c`, nil, nil, "the kernel keeps other quotes"},
		{`a=""`, []string{`a=""`}, []string{"a="}, ""},
		{`""`, nil, nil, "an empty argument"},
		{`a=$x`, nil, nil, "would be interpreted by GRUB or the shell"},
		{`a="$x"`, nil, nil, "would be expanded or escaped by GRUB"},
		{`a="it's"`, nil, nil, "would be expanded or escaped by GRUB"},
		{`a="b\c"`, nil, nil, "would be expanded or escaped by GRUB"},
		{"a=\"b\tc\"", nil, nil, "is not allowed"},
		{"quiet\nro", nil, nil, "is not allowed"},
		{`init=/bin/sh;reboot`, nil, nil, "';' would be interpreted"},
	}
	for _, tc := range tests {
		args, err := stages.KernelArgs(tc.cmdline)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("KernelArgs(%q) = %q, %v; want error %q", tc.cmdline, args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("KernelArgs(%q): %v", tc.cmdline, err)
			continue
		}
		if diff := cmp.Diff(tc.args, args); diff != "" {
			t.Errorf("KernelArgs(%q) (-want +got):\n%s", tc.cmdline, diff)
		}
		var values []string
		for _, a := range args {
			v, err := stages.KernelArgValue(a)
			if err != nil {
				t.Errorf("KernelArgValue(%q): %v", a, err)
			}
			values = append(values, v)
		}
		if diff := cmp.Diff(tc.values, values); diff != "" {
			t.Errorf("values of %q (-want +got):\n%s", tc.cmdline, diff)
		}
	}
}
