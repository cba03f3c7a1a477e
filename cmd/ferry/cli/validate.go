package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
)

func init() { register(newValidateCmd) }

func newValidateCmd(g *Globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a plan repository against the schema, its policy and ferry's rules",
		Long: `Validate loads every plan file (CUE or YAML) of DIR (default "."), checks it
against ferry's CUE schema, the repository's own policy/ package and the rules
CUE cannot express, and reports every problem with file:line:column, the field
path, the value seen and what was expected.

Exit codes: 0 valid, 1 invalid, 2 usage error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return withCode(ExitUsage, fmt.Errorf("--output %q: expected text or json", output))
			}
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			repo, err := loadDir(dir)
			var verrs plans.Errors
			if err != nil && !errors.As(err, &verrs) {
				return withCode(ExitUsage, err)
			}
			if output == "json" {
				res := struct {
					Valid  bool         `json:"valid"`
					Errors plans.Errors `json:"errors"`
				}{Valid: err == nil, Errors: verrs}
				if res.Errors == nil {
					res.Errors = plans.Errors{}
				}
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return withCode(ExitUsage, err)
				}
			} else if err != nil {
				for _, e := range verrs {
					fmt.Fprintln(g.Stdout, e)
				}
				fmt.Fprintf(g.Stdout, "%d error(s) in %s\n", len(verrs), dir)
			} else {
				n := 0
				for _, m := range repo.Migrations {
					n += len(m.Services())
				}
				fmt.Fprintf(g.Stdout, "%s: valid (%d clusters, %d migrations, %d services)\n", dir, len(repo.Clusters), len(repo.Migrations), n)
			}
			if err != nil {
				return withCode(ExitInvalid, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// loadDir loads the plan repository in dir. A missing directory is a usage
// error; invalid plans come back as plans.Errors.
func loadDir(dir string) (*plans.Repository, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("plan directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("plan directory %s: not a directory", dir)
	}
	return plans.Load(os.DirFS(dir))
}
