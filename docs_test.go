package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// markdownFiles are the documents of the repository: the README,
// ARCHITECTURE.md, BENCHMARKS.md and every page in docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs/*.md: %v, %d pages", err, len(pages))
	}
	return append([]string{"README.md", "ARCHITECTURE.md", "BENCHMARKS.md"}, pages...)
}

// TestEveryFlagInOneTable: every flag that `signup -h` lists appears in
// exactly one row of one table of the documents, and every flag a table
// names is one `signup -h` lists — so the table cannot drift from the code.
func TestEveryFlagInOneTable(t *testing.T) {
	t.Parallel()
	var help strings.Builder
	err := run(context.Background(), []string{"-h"}, func(string) string { return "" }, &help, &help)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 30 {
		t.Fatalf("-h lists %d flags; the pattern no longer reads it:\n%s", len(flags), help.String())
	}

	rows := map[string][]string{} // flag, where its rows are
	rowRE := regexp.MustCompile("^\\| (`-[a-z][a-z0-9-]*`(?:, `-[a-z][a-z0-9-]*`)*) \\|")
	for _, name := range markdownFiles(t) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			m := rowRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			for f := range strings.SplitSeq(m[1], ", ") {
				f = strings.Trim(f, "`-")
				rows[f] = append(rows[f], name+":"+strconv.Itoa(i+1))
			}
		}
	}
	for _, f := range flags {
		switch where := rows[f]; len(where) {
		case 0:
			t.Errorf("-%s: in no table of the documents", f)
		case 1:
		default:
			t.Errorf("-%s: in %d table rows (%s); want one", f, len(where), strings.Join(where, ", "))
		}
	}
	for f, where := range rows {
		if !slices.Contains(flags, f) {
			t.Errorf("-%s (%s): a table names it, but signup -h does not", f, strings.Join(where, ", "))
		}
	}
}

// TestDocLinksResolve: every relative link of the documents leads to a
// file that exists, and to a heading of it where it names one.
func TestDocLinksResolve(t *testing.T) {
	t.Parallel()
	linkRE := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, name := range markdownFiles(t) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := name
			if file != "" {
				path = filepath.Join(filepath.Dir(name), file)
			}
			doc, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: link %s: %v", name, target, err)
				continue
			}
			if anchor != "" && !slices.Contains(anchors(string(doc)), anchor) {
				t.Errorf("%s: link %s: %s has no heading %q", name, target, path, anchor)
			}
		}
	}
}

// anchors are the anchors of a markdown document's headings, as GitHub
// makes them: lower case, spaces as dashes, punctuation dropped.
func anchors(doc string) []string {
	var out []string
	inCode := false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range title {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestDocsShowTheDeployFiles: the nginx and Caddy configurations that
// docs/app.md shows are deploy/'s files as they are — the ones the proxy
// tests run.
func TestDocsShowTheDeployFiles(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("docs/app.md")
	if err != nil {
		t.Fatal(err)
	}
	for lang, file := range map[string]string{"nginx": "deploy/nginx.conf", "caddy": "deploy/Caddyfile"} {
		m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)\n```").FindSubmatch(doc)
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if m == nil || string(m[1]) != strings.TrimRight(string(want), "\n") {
			t.Errorf("docs/app.md does not show %s as it is", file)
		}
	}
}
