package stages

import (
	"fmt"
	"strings"
)

// A kernel command line passes through two parsers before the kernel sees
// it: GRUB's script (grub.cfg's linux line) and, for a later update-grub,
// the shell (/etc/default/grub). The kernel itself groups a double-quoted
// part with its spaces and strips the quotes of "name=value" and
// name="value"; it has no escapes. GRUB rebuilds the line from its words,
// wrapping a word that holds a space in double quotes and escaping quotes
// and backslashes with a backslash (grub_create_loader_cmdline), which the
// kernel would keep. So the arguments are checked against what survives
// both, and each is written to grub.cfg with its quotes removed and
// single-quoted when GRUB would otherwise interpret it.

// kernelPlain holds the characters an argument may have outside quotes:
// none of them means anything to GRUB's script or the shell.
func kernelPlain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.,=:/+@%-", c) >= 0
}

// kernelQuoted holds the characters an argument may have inside double
// quotes: printable ASCII but for what GRUB expands or escapes there, or
// would escape for the kernel ($, \, ", ', `).
func kernelQuoted(c byte) bool {
	return c >= ' ' && c <= '~' && strings.IndexByte("$\\\"'`", c) < 0
}

// KernelArgs splits a kernel command line into its arguments, as written
// (quotes kept), the way the kernel does: spaces separate them except
// inside double quotes. An argument may be quoted whole ("dyndbg=file a.c
// +p") or after its first "=" (console="ttyS0,115200"), the two forms the
// kernel strips; other quotes, unbalanced ones, and characters GRUB or the
// shell would interpret are refused.
func KernelArgs(cmdline string) ([]string, error) {
	var args []string
	for i := 0; i < len(cmdline); {
		if cmdline[i] == ' ' {
			i++
			continue
		}
		start, quote := i, -1
		for ; i < len(cmdline) && (quote >= 0 || cmdline[i] != ' '); i++ {
			c := cmdline[i]
			switch {
			case c == '"' && quote < 0:
				quote = i
			case c == '"':
				quote = -1
			case quote >= 0 && !kernelQuoted(c), quote < 0 && !kernelPlain(c):
				return nil, fmt.Errorf("%q: %s", cmdline[start:min(i+1, len(cmdline))], kernelCharError(c, quote >= 0))
			}
		}
		arg := cmdline[start:i]
		if quote >= 0 {
			return nil, fmt.Errorf("%q: the double quote is not closed", arg)
		}
		if _, err := KernelArgValue(arg); err != nil {
			return nil, err
		}
		args = append(args, arg)
	}
	return args, nil
}

func kernelCharError(c byte, quoted bool) string {
	switch {
	case c < ' ' || c > '~':
		return fmt.Sprintf("character %q is not allowed on a kernel command line here", c)
	case quoted:
		return fmt.Sprintf("%q inside double quotes would be expanded or escaped by GRUB", c)
	}
	return fmt.Sprintf("%q would be interpreted by GRUB or the shell: put the value in double quotes", c)
}

// KernelArgValue is what the kernel receives of one argument that
// KernelArgs accepted: its quotes removed.
func KernelArgValue(arg string) (string, error) {
	n := strings.Count(arg, `"`)
	switch {
	case arg == "" || arg == `""`:
		return "", fmt.Errorf("%q: an empty argument", arg)
	case n == 0:
		return arg, nil
	case n == 2 && len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"':
		return arg[1 : len(arg)-1], nil
	case n == 2 && arg[len(arg)-1] == '"':
		if eq := strings.IndexByte(arg, '='); eq > 0 && arg[eq+1] == '"' {
			return arg[:eq+1] + arg[eq+2:len(arg)-1], nil
		}
	}
	return "", fmt.Errorf("%q: quote a whole argument (\"name=value\") or its value (name=\"value\"); the kernel keeps other quotes", arg)
}

// grubWord writes a kernel argument (as KernelArgs accepted it) as a word
// of a GRUB script whose value is what the kernel should receive: plain
// when GRUB would not interpret it, else in single quotes, inside which
// GRUB interprets nothing. GRUB then double-quotes a word holding a space
// for the kernel.
func grubWord(arg string) string {
	v, _ := KernelArgValue(arg)
	for i := 0; i < len(v); i++ {
		if !kernelPlain(v[i]) {
			return "'" + v + "'"
		}
	}
	return v
}
