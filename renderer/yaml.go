package renderer

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// The fast path writes manifests without krusty. What krusty emits for a
// resource is fixed by kustomize's Resource.AsYAML: the object is parsed by
// kyaml (YAML 1.2, go-yaml v3), turned into JSON through a Go map (keys
// sorted), and converted back with sigs.k8s.io/yaml's JSONToYAML, which
// unmarshals the JSON with go-yaml v2 and marshals it again. So the bytes are
// go-yaml v2's encoding of the object: map keys in go-yaml v2's key order,
// block style, sequences not indented under their key, strings plain unless
// YAML 1.1 would read them as something else. The emitter below produces
// exactly that for the values ferry renders (mappings, sequences, strings,
// ints, bools) and hands anything else (multi-line or non-ASCII strings,
// strings with spaces, very long keys) to the reference encoder, which is
// the same chain krusty runs. Tests compare the two on every object and on
// whole overlays built by krusty and by `kubectl kustomize`.

// mapping is a YAML mapping. Its fields may be in any order; the emitter
// writes them in go-yaml v2's order.
type mapping []field

type field struct {
	key string
	val any // string, int, bool, mapping, seq
}

// seq is a YAML sequence.
type seq []any

// toPlain converts a tree into the map/slice form encoding/json and the
// reference encoder take.
func toPlain(v any) any {
	switch v := v.(type) {
	case mapping:
		m := make(map[string]any, len(v))
		for _, f := range v {
			m[f.key] = toPlain(f.val)
		}
		return m
	case seq:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = toPlain(e)
		}
		return s
	default:
		return v
	}
}

// referenceYAML encodes an object the way kustomize's Resource.AsYAML does.
func referenceYAML(obj mapping) ([]byte, error) {
	j, err := json.Marshal(toPlain(obj))
	if err != nil {
		return nil, err
	}
	return sigsyaml.JSONToYAML(j)
}

// scalars caches the encoding of strings. A string's encoding depends only
// on the string for the strings the emitter accepts (no spaces, so no line
// folding; no newlines, so no block scalars), so it can be computed once by
// go-yaml v2 itself.
type scalars struct {
	m map[string]*scalar
}

type scalar struct {
	// out is the encoding in krusty's output (go-yaml v2).
	out string
	// in is the encoding in the overlay files ferry writes, which kyaml
	// reads as YAML 1.2: a few strings go-yaml v2 leaves plain are numbers
	// in YAML 1.2 ("0o17", ".5e3"), so those are quoted there.
	in string
	// ok is false when the string must go through the reference encoder.
	ok bool
}

func newScalars() *scalars { return &scalars{m: make(map[string]*scalar)} }

func (c *scalars) get(s string) *scalar {
	if sc, ok := c.m[s]; ok {
		return sc
	}
	sc := encodeScalar(s)
	if len(c.m) > 1<<20 {
		// Bound the cache; names come and go with plans.
		c.m = make(map[string]*scalar)
	}
	c.m[s] = sc
	return sc
}

func encodeScalar(s string) *scalar {
	if plainInBoth(s) {
		return &scalar{out: s, in: s, ok: true}
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e {
			// Spaces fold, control characters escape, non-ASCII is left
			// to the reference encoder.
			return &scalar{}
		}
	}
	b, err := yamlv2.Marshal(s)
	if err != nil {
		return &scalar{}
	}
	out := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(out, "\n") {
		return &scalar{}
	}
	sc := &scalar{out: out, in: out, ok: true}
	if out == s {
		// Plain in YAML 1.1: make sure YAML 1.2 reads a string too.
		var v any
		if err := yamlv3.Unmarshal([]byte(s), &v); err != nil {
			return &scalar{}
		}
		if _, isStr := v.(string); !isStr {
			sc.in = strconv.Quote(s)
		}
	}
	return sc
}

// plainInBoth reports, cheaply and conservatively, that go-yaml v2 writes s
// plain and YAML 1.2 reads it back as a string: s starts with a letter,
// holds only letters, digits and "-._/", and is not one of YAML 1.1's
// boolean or null words. YAML 1.1 reads a letter-first scalar as something
// other than a string only when it is such a word; the characters allowed
// never make go-yaml quote a scalar. Everything else is asked of go-yaml.
func plainInBoth(s string) bool {
	if s == "" || !isLetterASCII(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetterASCII(c) && !isDigitASCII(c) && c != '-' && c != '.' && c != '_' && c != '/' {
			return false
		}
	}
	if len(s) <= 5 {
		switch strings.ToLower(s) {
		case "y", "yes", "n", "no", "true", "false", "on", "off", "null":
			return false
		}
	}
	return true
}

// maxKeyLen keeps keys well below go-yaml's 128-character limit for simple
// keys, beyond which it writes "? key".
const maxKeyLen = 100

// emitter writes the go-yaml v2 encoding of a tree.
type emitter struct {
	sc  *scalars
	out []byte // krusty's encoding
	// patches are the places where the overlay file's encoding differs.
	patches []patch
	bad     bool
}

// patch replaces out[at:at+n] with in in the overlay file's encoding.
type patch struct {
	at, n int
	in    string
}

// encode returns the encoding of obj as krusty emits it and as the overlay
// file holds it (the same slice unless a string needs quoting for YAML 1.2).
func encode(sc *scalars, obj mapping) (out, in []byte, err error) {
	out, in, err = encodeAppend(sc, nil, obj)
	if err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

// encodeAppend appends the overlay file's encoding of obj to buf and
// returns the extended buffer and krusty's encoding, which is a subslice
// of it unless the two differ.
func encodeAppend(sc *scalars, buf []byte, obj mapping) (out, file []byte, err error) {
	start := len(buf)
	e := emitter{sc: sc, out: buf}
	e.mapping(obj, 0, false)
	if e.bad {
		out, err := referenceYAML(obj)
		if err != nil {
			return nil, nil, err
		}
		in, err := fileYAML(obj)
		if err != nil {
			return nil, nil, err
		}
		return out, append(buf[:start], in...), nil
	}
	if len(e.patches) == 0 {
		return e.out[start:len(e.out):len(e.out)], e.out, nil
	}
	out = append([]byte(nil), e.out[start:]...)
	file = e.out[:start]
	last := start
	for _, p := range e.patches {
		file = append(file, e.out[last:p.at]...)
		file = append(file, p.in...)
		last = p.at + p.n
	}
	file = append(file, e.out[last:]...)
	return out, file, nil
}

// fileYAML encodes an object for an overlay file when the fast encoder
// cannot: JSON is YAML, and kyaml reads it back unchanged.
func fileYAML(obj mapping) ([]byte, error) {
	j, err := json.MarshalIndent(toPlain(obj), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(j, '\n'), nil
}

func (e *emitter) write(s string) { e.out = append(e.out, s...) }

func (e *emitter) indent(n int) {
	for i := 0; i < n; i++ {
		e.out = append(e.out, ' ')
	}
}

func (e *emitter) str(s string, key bool) {
	if key && len(s) > maxKeyLen {
		e.bad = true
		return
	}
	sc := e.sc.get(s)
	if !sc.ok {
		e.bad = true
		return
	}
	if sc.in != sc.out {
		e.patches = append(e.patches, patch{at: len(e.out), n: len(sc.out), in: sc.in})
	}
	e.out = append(e.out, sc.out...)
}

func (e *emitter) scalar(v any) {
	switch v := v.(type) {
	case string:
		e.str(v, false)
	case int:
		e.out = strconv.AppendInt(e.out, int64(v), 10)
	case bool:
		e.out = strconv.AppendBool(e.out, v)
	default:
		e.bad = true
	}
}

// mapping writes m at indentation n; inSeq says the cursor already stands
// after "- " for the first key.
func (e *emitter) mapping(m mapping, n int, inSeq bool) {
	if len(m) == 0 {
		e.write("{}\n")
		return
	}
	fs := sortFields(m)
	for i, f := range fs {
		if e.bad {
			return
		}
		if i > 0 || !inSeq {
			e.indent(n)
		}
		e.str(f.key, true)
		e.write(":")
		switch v := f.val.(type) {
		case mapping:
			if len(v) == 0 {
				e.write(" {}\n")
				continue
			}
			e.write("\n")
			e.mapping(v, n+2, false)
		case seq:
			if len(v) == 0 {
				e.write(" []\n")
				continue
			}
			e.write("\n")
			e.seq(v, n)
		default:
			e.write(" ")
			e.scalar(v)
			e.write("\n")
		}
	}
}

func (e *emitter) seq(s seq, n int) {
	for _, item := range s {
		if e.bad {
			return
		}
		e.indent(n)
		e.write("- ")
		switch v := item.(type) {
		case mapping:
			if len(v) == 0 {
				e.write("{}\n")
				continue
			}
			e.mapping(v, n+2, true)
		case seq:
			// Not rendered by ferry; leave it to the reference encoder.
			e.bad = true
		default:
			e.scalar(v)
			e.write("\n")
		}
	}
}

// sortFields returns the fields of m in go-yaml v2's key order. Most
// mappings are built already sorted, so check before copying.
func sortFields(m mapping) mapping {
	sorted := true
	for i := 1; i < len(m); i++ {
		if !keyLess(m[i-1].key, m[i].key) {
			sorted = false
			break
		}
	}
	if sorted {
		return m
	}
	fs := make(mapping, len(m))
	copy(fs, m)
	// Insertion sort: mappings are small.
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && keyLess(fs[j].key, fs[j-1].key); j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
	return fs
}

// keyLess orders mapping keys as go-yaml v2 does (its keyList.Less for
// string keys): letters compare by code point and sort after non-letters,
// runs of digits compare by numeric value, so "a2" < "a10".
func keyLess(a, b string) bool {
	if isASCII(a) && isASCII(b) {
		return keyLessASCII(a, b)
	}
	return keyLessRunes([]rune(a), []rune(b))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isLetterASCII(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigitASCII(c byte) bool  { return c >= '0' && c <= '9' }

func keyLessASCII(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		la, lb := isLetterASCII(ca), isLetterASCII(cb)
		if la && lb {
			return ca < cb
		}
		if la || lb {
			return lb
		}
		var na, nb int64
		if ca == '0' || cb == '0' {
			// A zero inside a number that started earlier counts as a
			// digit of that number, not as a leading zero.
			for j := i - 1; j >= 0 && isDigitASCII(a[j]); j-- {
				if a[j] != '0' {
					na, nb = 1, 1
					break
				}
			}
		}
		ea, eb := i, i
		for ; ea < len(a) && isDigitASCII(a[ea]); ea++ {
			na = na*10 + int64(a[ea]-'0')
		}
		for ; eb < len(b) && isDigitASCII(b[eb]); eb++ {
			nb = nb*10 + int64(b[eb]-'0')
		}
		if na != nb {
			return na < nb
		}
		if ea != eb {
			return ea < eb
		}
		return ca < cb
	}
	return len(a) < len(b)
}

func keyLessRunes(a, b []rune) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		la, lb := unicode.IsLetter(ca), unicode.IsLetter(cb)
		if la && lb {
			return ca < cb
		}
		if la || lb {
			return lb
		}
		var na, nb int64
		if ca == '0' || cb == '0' {
			for j := i - 1; j >= 0 && unicode.IsDigit(a[j]); j-- {
				if a[j] != '0' {
					na, nb = 1, 1
					break
				}
			}
		}
		ea, eb := i, i
		for ; ea < len(a) && unicode.IsDigit(a[ea]); ea++ {
			na = na*10 + int64(a[ea]-'0')
		}
		for ; eb < len(b) && unicode.IsDigit(b[eb]); eb++ {
			nb = nb*10 + int64(b[eb]-'0')
		}
		if na != nb {
			return na < nb
		}
		if ea != eb {
			return ea < eb
		}
		return ca < cb
	}
	return len(a) < len(b)
}
