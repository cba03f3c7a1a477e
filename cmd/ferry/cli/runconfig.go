package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets every flag of fs that the YAML file at path names
// and the command line did not: the file's keys are the flags' names
// (`state-dir: /var/lib/ferry`), so `ferry run --help` documents both.
// Secrets never go in the file; they come from environment variables.
// Every unknown key and bad value is reported, with its line.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s:%d: expected a mapping of flag names to values", path, root.Line)
	}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f := fs.Lookup(k.Value)
		switch {
		case f == nil || k.Value == "config" || k.Value == "help":
			errs = append(errs, fmt.Errorf("config %s:%d: unknown setting %q; the settings are the flags of `ferry run --help`", path, k.Line, k.Value))
			continue
		case f.Changed:
			continue // the command line wins
		}
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			var items []string
			for _, it := range v.Content {
				items = append(items, it.Value)
			}
			val = strings.Join(items, ",")
		default:
			errs = append(errs, fmt.Errorf("config %s:%d: %s: expected a value, got a mapping", path, v.Line, k.Value))
			continue
		}
		if err := fs.Set(k.Value, val); err != nil {
			errs = append(errs, fmt.Errorf("config %s:%d: %s: %q: %v", path, v.Line, k.Value, val, err))
		}
	}
	return errors.Join(errs...)
}
