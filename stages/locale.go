package stages

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

func init() { register[Locale]("locale", 1) }

// Locale sets the system locale and the console keyboard layout.
type Locale struct {
	// Language is the LANG locale ("en_US.UTF-8"); locales other than C
	// and POSIX are generated with the tree's locale-gen.
	Language string `json:"language,omitempty"`
	// Generate are further locales to generate ("de_DE.UTF-8"), for
	// users who choose them; they do not change LANG.
	Generate []string `json:"generate,omitempty"`
	// Keyboard is the layout: XKBLAYOUT of /etc/default/keyboard and
	// KEYMAP of /etc/vconsole.conf.
	Keyboard string `json:"keyboard,omitempty"`
}

var (
	localeName   = regexp.MustCompile(`^[A-Za-z]{2,3}(_[A-Za-z]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$`)
	keyboardName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// builtinLocale reports locales glibc has without generating them.
func builtinLocale(l string) bool {
	switch l {
	case "C", "POSIX", "C.UTF-8", "C.utf8":
		return true
	}
	return false
}

func (s *Locale) validate() error {
	if s.Language != "" && !builtinLocale(s.Language) && !localeName.MatchString(s.Language) {
		return fmt.Errorf("language: %q is not a locale name such as en_US.UTF-8", s.Language)
	}
	for i, l := range s.Generate {
		if !builtinLocale(l) && !localeName.MatchString(l) {
			return fmt.Errorf("generate[%d]: %q is not a locale name such as en_US.UTF-8", i, l)
		}
	}
	if s.Keyboard != "" && !keyboardName.MatchString(s.Keyboard) {
		return fmt.Errorf("keyboard: %q is not a keyboard layout name", s.Keyboard)
	}
	return nil
}

// Run writes the configuration and generates the locale.
func (s *Locale) Run(ctx context.Context, env *Env) error {
	if s.Language != "" || len(s.Generate) > 0 {
		if err := s.language(ctx, env); err != nil {
			return err
		}
	}
	if s.Keyboard != "" {
		kb, err := treeReadFile(env.Tree, "/etc/default/keyboard")
		if errors.Is(err, fs.ErrNotExist) {
			// keyboard-configuration's defaults.
			kb = []byte("XKBMODEL=\"pc105\"\nXKBLAYOUT=\"us\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\n\nBACKSPACE=\"guess\"\n")
		} else if err != nil {
			return fmt.Errorf("keyboard: %w", err)
		}
		kb = setShellVars(kb, "XKBLAYOUT", shellQuote(s.Keyboard))
		if err := treeWriteConfig(env.Tree, "/etc/default/keyboard", kb, 0o644); err != nil {
			return fmt.Errorf("keyboard: %w", err)
		}
		if err := setConfigVars(env.Tree, "/etc/vconsole.conf", "KEYMAP", s.Keyboard); err != nil {
			return fmt.Errorf("keyboard: %w", err)
		}
	}
	return nil
}

func (s *Locale) language(ctx context.Context, env *Env) error {
	var gen []byte
	generate := false
	for _, l := range append([]string{s.Language}, s.Generate...) {
		if l == "" || builtinLocale(l) {
			continue
		}
		charset, err := supportedCharset(env.Tree, l)
		if err != nil {
			return err
		}
		if !generate {
			if gen, err = treeReadFile(env.Tree, "/etc/locale.gen"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("language: %w", err)
			}
			generate = true
		}
		gen = enableLocale(gen, l, charset)
	}
	if generate {
		if err := treeWriteConfig(env.Tree, "/etc/locale.gen", gen, 0o644); err != nil {
			return fmt.Errorf("language: %w", err)
		}
		if err := runInTree(ctx, env, "locale-gen"); err != nil {
			return fmt.Errorf("language: %w", err)
		}
	}
	if s.Language == "" {
		return nil
	}
	if err := setConfigVars(env.Tree, "/etc/default/locale", "LANG", s.Language); err != nil {
		return fmt.Errorf("language: %w", err)
	}
	return nil
}

// supportedCharset looks a locale up in the tree's list of locales glibc
// can generate, returning its charset.
func supportedCharset(root, lang string) (string, error) {
	data, err := treeReadFile(root, "/usr/share/i18n/SUPPORTED")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("language: %s needs the locales package in the tree (no /usr/share/i18n/SUPPORTED)", lang)
	}
	if err != nil {
		return "", fmt.Errorf("language: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == lang {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("language: %s is not a locale the tree supports (see its /usr/share/i18n/SUPPORTED)", lang)
}

// enableLocale returns locale.gen with "lang charset" enabled: a
// commented-out line uncommented, or a line added.
func enableLocale(gen []byte, lang, charset string) []byte {
	want := lang + " " + charset
	lines := strings.Split(strings.TrimSuffix(string(gen), "\n"), "\n")
	if len(gen) == 0 {
		lines = nil
	}
	for i, l := range lines {
		f := strings.Fields(strings.TrimLeft(l, "# "))
		if len(f) == 2 && f[0] == lang && f[1] == charset {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				return gen
			}
			lines[i] = want
			return []byte(strings.Join(lines, "\n") + "\n")
		}
	}
	return []byte(strings.Join(append(lines, want), "\n") + "\n")
}

// setConfigVars sets KEY=value variables (value written as given) in a
// shell-style file of the tree, creating it when missing.
func setConfigVars(root, p string, kv ...string) error {
	data, err := treeReadFile(root, p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return treeWriteConfig(root, p, setShellVars(data, kv...), 0o644)
}

// setShellVars replaces the assignment lines of each key (pairs in kv) in a
// shell-style file, or appends one; other lines are kept.
func setShellVars(data []byte, kv ...string) []byte {
	text := string(data)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	lines := strings.SplitAfter(text, "\n")
	if text == "" {
		lines = nil
	} else {
		lines = lines[:len(lines)-1]
	}
	for i := 0; i+1 < len(kv); i += 2 {
		key, line := kv[i], kv[i]+"="+kv[i+1]+"\n"
		done := false
		for j, l := range lines {
			if strings.HasPrefix(strings.TrimLeft(l, " \t"), key+"=") || strings.HasPrefix(strings.TrimLeft(l, " \t"), "export "+key+"=") {
				if done {
					lines[j] = ""
					continue
				}
				lines[j], done = line, true
			}
		}
		if !done {
			lines = append(lines, line)
		}
	}
	return []byte(strings.Join(lines, ""))
}

// shellQuote quotes s for a shell-style configuration file.
func shellQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}
