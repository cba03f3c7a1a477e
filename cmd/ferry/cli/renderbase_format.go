package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// markdownMarker starts every comment, so that CI can find and replace the
// comment of an earlier push instead of adding another.
const markdownMarker = "<!-- ferry render --base -->"

// maxDiffLines bounds each cluster's diff in a comment: GitHub refuses
// comments over 65,536 characters, and a reviewer reads the rest locally.
const maxDiffLines = 400

// maxCommentBytes leaves room under GitHub's limit for the closing lines;
// the diffs of clusters past it are left out.
const maxCommentBytes = 60000

// writeText prints each cluster's diff, then the summary.
func writeText(w io.Writer, c *comparison) error {
	for _, d := range c.Clusters {
		fmt.Fprint(w, d.Diff)
	}
	if c.changed() {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Compared %s with %s.\n", c.Base, c.Head)
	fmt.Fprintf(w, "Progress assumed: %s.\n", c.Assumed)
	for _, n := range c.notes() {
		fmt.Fprintf(w, "Note: %s.\n", n)
	}
	if !c.changed() {
		fmt.Fprintln(w, "No changes: both render the same.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCLUSTER\tADDED\tCHANGED\tPRUNED")
	for _, d := range c.Clusters {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", d.Cluster, len(d.Added), len(d.Changed), len(d.Pruned))
	}
	if len(c.Changes) > 0 {
		fmt.Fprintln(tw, "\nCHANGE\tSUBJECT\tBASE\tHEAD")
		for _, ch := range c.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.Kind, ch.Subject, orDash(oneLine(ch.Base)), orDash(oneLine(ch.Head)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ws := c.warnings(); len(ws) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, x := range ws {
			fmt.Fprintf(w, "- %s: %s: %s\n", x.what, x.subject, x.why)
		}
	}
	return nil
}

// writeMarkdown writes a pull-request comment: warnings first, then the
// summary tables, then each cluster's diff folded away.
func writeMarkdown(w io.Writer, c *comparison) error {
	var b strings.Builder
	head := mdText(c.Head)
	if c.Head != workingTree {
		head = mdCode(c.Head)
	}
	fmt.Fprintf(&b, "%s\n### ferry render: %s → %s\n\n", markdownMarker, mdCode(c.Base), head)
	fmt.Fprintf(&b, "Progress assumed: %s.\n", mdText(c.Assumed))
	for _, n := range c.notes() {
		fmt.Fprintf(&b, "\n> [!NOTE]\n> %s.\n", mdText(n))
	}
	if !c.changed() {
		b.WriteString("\nNo changes: both render the same.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	if ws := c.warnings(); len(ws) > 0 {
		fmt.Fprintf(&b, "\n> [!WARNING]\n> **%d risky change(s)**\n", len(ws))
		for _, x := range ws {
			subject := mdCode(x.subject)
			if cluster, ok := strings.CutPrefix(x.subject, "cluster "); ok {
				subject = "cluster " + mdCode(cluster)
			}
			fmt.Fprintf(&b, "> - **%s** %s: %s\n", mdText(x.what), subject, mdText(x.why))
		}
	}
	if len(c.Changes) > 0 {
		b.WriteString("\n| change | subject | base | head |\n|---|---|---|---|\n")
		for _, ch := range c.Changes {
			kind := mdText(ch.Kind)
			if ch.Risk != "" {
				kind = "⚠️ " + kind
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", kind, mdCode(ch.Subject), mdCell(ch.Base), mdCell(ch.Head))
		}
	}
	b.WriteString("\n| cluster | added | changed | pruned |\n|---|--:|--:|--:|\n")
	for _, d := range c.Clusters {
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", mdCode(d.Cluster), len(d.Added), len(d.Changed), len(d.Pruned))
	}
	for _, d := range c.Clusters {
		if d.Diff == "" {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s: %d added, %d changed, %d pruned</summary>\n\n", mdText(d.Cluster), len(d.Added), len(d.Changed), len(d.Pruned))
		diff, cut := truncateLines(d.Diff, maxDiffLines)
		fence := mdFence(diff)
		block := fmt.Sprintf("%sdiff\n%s%s\n", fence, diff, fence)
		if b.Len()+len(block) > maxCommentBytes {
			block, cut = "", strings.Count(d.Diff, "\n")
		}
		b.WriteString(block)
		if cut > 0 {
			fmt.Fprintf(&b, "\n%d more diff lines: run `ferry render --base` locally.\n", cut)
		}
		b.WriteString("\n</details>\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// changed reports whether anything differs between the two sides.
func (c *comparison) changed() bool {
	if len(c.Changes) > 0 {
		return true
	}
	for _, d := range c.Clusters {
		if d.Diff != "" {
			return true
		}
	}
	return false
}

// notes are the comparison's notes plus the objects ferry only releases.
func (c *comparison) notes() []string {
	out := append([]string(nil), c.Notes...)
	for _, d := range c.Clusters {
		if len(d.Unowned) > 0 {
			out = append(out, fmt.Sprintf("cluster %s: ferry's labels and annotations are removed from %s (not deleted)", d.Cluster, listWords(d.Unowned, 5)))
		}
	}
	return out
}

// warning is one risky change, in words.
type warning struct{ what, subject, why string }

// warnings lists the objects that would be pruned, cluster by cluster, then
// the risky plan changes.
func (c *comparison) warnings() []warning {
	var out []warning
	for _, d := range c.Clusters {
		if len(d.Pruned) > 0 {
			out = append(out, warning{"prune", "cluster " + d.Cluster,
				fmt.Sprintf("%d object(s) would be deleted: %s", len(d.Pruned), listWords(d.Pruned, 10))})
		}
	}
	for _, ch := range c.risks() {
		out = append(out, warning{ch.Kind, ch.Subject, ch.Risk})
	}
	return out
}

// truncateLines keeps the first n lines of s and says how many it cut.
func truncateLines(s string, n int) (string, int) {
	ls := strings.SplitAfter(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	if len(ls) <= n {
		return s, 0
	}
	return strings.Join(ls[:n], ""), len(ls) - n
}

// mdFence returns a code fence longer than any run of backticks in s.
func mdFence(s string) string {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	return fence
}

// mdCode writes s as inline code that is safe in a table cell.
func mdCode(s string) string {
	s = strings.ReplaceAll(oneLine(s), "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// mdCell is a table cell: inline code, or a dash when empty.
func mdCell(s string) string {
	if s == "" {
		return "—"
	}
	return mdCode(s)
}

// mdText escapes the characters Markdown would read as markup or HTML.
func mdText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", ">", "&gt;", "|", `\|`, "[", `\[`, "]", `\]`)
	return r.Replace(oneLine(s))
}
