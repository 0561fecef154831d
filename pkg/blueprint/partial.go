package blueprint

import (
	"bytes"
	"unicode/utf8"
)

// ParseForEdit is Parse for an editor: when the document decodes (its
// syntax and types are right) but its values fail validation, it returns
// the decoded blueprint along with the errors, so that an editor can show
// the values next to what is wrong with them. It returns nil only when
// the document does not decode. The TOML format is assumed unless
// filename ends in .json.
func ParseForEdit(filename string, data []byte) (*Blueprint, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return Parse(filename, data)
	}
	parse := parseTOML
	format := formatTOML
	if bytes.HasSuffix([]byte(filename), []byte(".json")) {
		parse, format = parseJSON, formatJSON
	}
	tree, src, perr := parse(filename, data)
	if perr != nil {
		return nil, perr
	}
	var b Blueprint
	if errs := decodeTree(tree, &b, format, src); len(errs) > 0 {
		return nil, locate(errs, src)
	}
	b.Source = src
	b.normalize()
	return &b, locate(b.validate(), src)
}
