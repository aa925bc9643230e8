package main

// templates.go loads the email and page templates: embedded, overridable with
// -templates, all parsed and tried at start.

import (
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"
)

//go:embed templates
var templateFS embed.FS

// pageFiles are the pages, each executed inside layout.html.
var pageFiles = []string{"message.html", "signup.html", "activate.html", "resend.html", "forgot-password.html", "reset-password.html",
	"login.html", "account.html", "confirm-email.html"}

// templates are the parsed email and page templates and the stylesheet.
type templates struct {
	emails map[string]mailTemplate
	pages  map[string]*htmltemplate.Template
	css    []byte
}

// loadTemplates parses every template, each from dir if a file of its name
// is there, else the embedded one, and executes each against sample data,
// so that a broken override stops the start, naming its file.
func loadTemplates(dir string) (*templates, error) {
	if dir != "" {
		if err := checkOverrides(dir); err != nil {
			return nil, err
		}
	}
	read := func(name string) (string, string, error) {
		if dir != "" {
			path := filepath.Join(dir, name)
			b, err := os.ReadFile(path)
			if err == nil {
				return string(b), path, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", path, err
			}
		}
		b, err := templateFS.ReadFile("templates/" + name)
		return string(b), "templates/" + name + " (embedded)", err
	}

	t := &templates{emails: map[string]mailTemplate{}, pages: map[string]*htmltemplate.Template{}}
	sample := mailData{AppName: "Signup", Name: "Sam <Sample>", Link: "https://signup.example.com/activate?token=SAMPLE", Expires: formatTime(time.Now()),
		OldEmail: "sam@example.com", NewEmail: "sam@example.org"}
	for kind, k := range emailKinds {
		name := k.template
		src, path, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		var mt mailTemplate
		if mt.text, err = template.New(name).Parse(src); err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		if mt.html, err = htmltemplate.New(name).Parse(src); err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		for _, part := range []string{"subject", "plainBody"} {
			if err := mt.text.ExecuteTemplate(io.Discard, part, sample); err != nil {
				return nil, fmt.Errorf("template %s: %w", path, err)
			}
		}
		if err := mt.html.ExecuteTemplate(io.Discard, "htmlBody", sample); err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		t.emails[kind] = mt
	}

	layoutSrc, layoutPath, err := read("layout.html")
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", layoutPath, err)
	}
	layout, err := htmltemplate.New("layout.html").Funcs(htmltemplate.FuncMap{"formatTime": formatTime}).Parse(layoutSrc)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", layoutPath, err)
	}
	samplePage := page{AppName: "Signup", Title: "Sample", Lines: []string{"A line."}, Link: "/signup", LinkText: "Sign up",
		Form: map[string]string{"name": "Sam", "email": "sam@example.com"}, Errors: map[string]string{"email": "must be provided"},
		Name: "Sam", SignedUpAt: formatTime(time.Now()), Token: "SAMPLE",
		Account: &user{ID: 1, Name: "Sam", Email: "sam@example.com"}, Since: formatTime(time.Now()),
		Sessions: []loginSession{{ID: "0123456789abcdef", UserAgent: "Firefox", Current: true, Browser: true}, {ID: "fedcba9876543210"}}}
	for _, name := range pageFiles {
		src, path, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		pt := htmltemplate.Must(layout.Clone())
		if _, err := pt.New(name).Parse(src); err != nil {
			return nil, fmt.Errorf("template %s: %w", path, err)
		}
		if err := pt.ExecuteTemplate(io.Discard, "layout.html", samplePage); err != nil {
			return nil, fmt.Errorf("template %s (in %s): %w", path, layoutPath, err)
		}
		t.pages[name] = pt
	}
	css, _, err := read("style.css")
	if err != nil {
		return nil, fmt.Errorf("template style.css: %w", err)
	}
	t.css = []byte(css)
	return t, nil
}

// checkOverrides refuses a file in dir that overrides nothing: most likely
// a typo, which would otherwise be silently ignored.
func checkOverrides(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("-templates: %w", err)
	}
	known, _ := fs.Glob(templateFS, "templates/*")
	for _, e := range entries {
		if !slices.Contains(known, "templates/"+e.Name()) {
			return fmt.Errorf("-templates: %s overrides no template; the templates are %s",
				filepath.Join(dir, e.Name()), strings.TrimPrefix(strings.Join(known, ", "), "templates/"))
		}
	}
	return nil
}
