package main

// templates.go loads the email and page templates of every language
// (languages.go has their messages): embedded, overridable with -templates
// (per language in its directory), all parsed and tried at start.

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
	"text/template/parse"
	"time"

	"golang.org/x/text/language"
)

//go:embed templates
var templateFS embed.FS

// pageFiles are the pages, each executed inside layout.html.
var pageFiles = []string{"message.html", "signup.html", "activate.html", "resend.html", "forgot-password.html", "reset-password.html",
	"login.html", "account.html", "confirm-email.html", "undo-email.html", "login-code.html", "two-step.html", "two-step-codes.html", "consent.html", "end-session.html"}

// templates are the parsed email and page templates of every language,
// the stylesheet, and the languages offered.
type templates struct {
	emails  map[string]map[emailKind]mailTemplate        // by language, then kind
	pages   map[string]map[string]*htmltemplate.Template // by language, then file
	css     []byte
	locales map[string]*locale // every language, offered or not
	offered []string           // -languages, -default-language first
	matcher language.Matcher   // of offered
}

// loadTemplates parses every template in every language, each from
// dir/<lang>/ if a file of its name is there, else from dir, else the
// embedded one, and executes each against sample data, so that a broken
// override or message stops the start, naming its file. languages (empty:
// every one there is) are offered, defaultLanguage first.
func loadTemplates(dir string, languages []string, defaultLanguage string) (*templates, error) {
	if dir != "" {
		if err := checkOverrides(dir); err != nil {
			return nil, err
		}
	}
	locales, tags, err := loadLocales(dir)
	if err != nil {
		return nil, err
	}
	t := &templates{emails: map[string]map[emailKind]mailTemplate{}, pages: map[string]map[string]*htmltemplate.Template{}, locales: locales}
	if t.offered, err = offer(tags, languages, defaultLanguage); err != nil {
		return nil, err
	}
	var supported []language.Tag
	for _, tag := range t.offered {
		supported = append(supported, language.Make(tag))
	}
	t.matcher = language.NewMatcher(supported)
	done := &parsed{emails: map[string]mailTemplate{}, layouts: map[string]*htmltemplate.Template{}, pages: map[string]*htmltemplate.Template{}}
	for _, tag := range tags {
		if t.emails[tag], t.pages[tag], err = parseLanguage(dir, locales[tag], t.offered, done); err != nil {
			return nil, err
		}
	}
	css, _, err := readTemplate(dir, "", "style.css")
	if err != nil {
		return nil, fmt.Errorf("template style.css: %w", err)
	}
	t.css = []byte(css)
	return t, nil
}

// offer is the languages offered: those asked for, each one there is,
// defaultLanguage first; all of them when none are asked for.
func offer(tags, languages []string, defaultLanguage string) ([]string, error) {
	if len(languages) == 0 {
		languages = tags
	}
	offered := []string{defaultLanguage}
	for _, tag := range languages {
		if !slices.Contains(tags, tag) {
			return nil, fmt.Errorf("-languages: %q is not a language here; there are %s (add one with -templates DIR/%s/messages.json)", tag, strings.Join(tags, ", "), tag)
		}
		if tag != defaultLanguage {
			offered = append(offered, tag)
		}
	}
	if !slices.Contains(languages, defaultLanguage) {
		return nil, fmt.Errorf("-default-language: %q is not one of the languages offered (%s)", defaultLanguage, strings.Join(languages, " "))
	}
	return offered, nil
}

// readTemplate reads template name of language tag: dir/tag/name, else
// dir/name, else the embedded one. It returns the path it read, for errors.
func readTemplate(dir, tag, name string) (string, string, error) {
	if dir != "" {
		for _, path := range []string{filepath.Join(dir, tag, name), filepath.Join(dir, name)} {
			b, err := os.ReadFile(path)
			if err == nil {
				return string(b), path, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", path, err
			}
		}
	}
	b, err := templateFS.ReadFile("templates/" + name)
	return string(b), "templates/" + name + " (embedded)", err
}

// parsed holds the templates parsed so far, by the files they were read
// from: a file serves every language that reads it (the data carries the
// language), so each is parsed once.
type parsed struct {
	emails  map[string]mailTemplate
	layouts map[string]*htmltemplate.Template // never executed: each page is a clone
	pages   map[string]*htmltemplate.Template // by layout's file and page's file
}

// templateFuncs are what a template may call besides the data's methods
// ($.T, $.FieldError, $.FormatTime).
var templateFuncs = map[string]any{"wrap": wrap, "proof": proofOfPage}

// proofFields is what account.html's "proof" template is given: the page,
// the form's id prefix, whether the page's errors are the form's, and
// whether its fields come first.
type proofFields struct {
	P           page
	ID          string
	Mine, First bool
}

// proofOfPage is account.html's (proof $ "id" mine first).
func proofOfPage(p page, id string, mine, first bool) proofFields {
	return proofFields{p, id, mine, first}
}

// parseLanguage parses (or takes from done) every email and page template
// of language l and tries each in l.
func parseLanguage(dir string, l *locale, offered []string, done *parsed) (map[emailKind]mailTemplate, map[string]*htmltemplate.Template, error) {
	// known reports a key that is no message, with the template naming it.
	// Every language has the same keys, so a file is checked once, when
	// it is parsed.
	known := func(path string, trees ...*parse.Tree) error {
		for _, tree := range trees {
			for _, key := range messageKeys(tree) {
				if _, ok := l.texts[key]; !ok {
					return fmt.Errorf("template %s: no message %q in any language", path, key)
				}
			}
		}
		return nil
	}

	emails := map[emailKind]mailTemplate{}
	now := time.Now()
	sample := mailData{AppName: "Signup", locale: l, Name: "Sam <Sample>", Link: "https://signup.example.com/activate?token=SAMPLE", Expires: l.formatTime(now),
		OldEmail: "sam@example.com", NewEmail: "sam@example.org"}
	for kind, k := range emailKinds {
		name := k.template
		src, path, err := readTemplate(dir, l.tag, name)
		if err != nil {
			return nil, nil, fmt.Errorf("template %s: %w", path, err)
		}
		mt, ok := done.emails[path]
		if !ok {
			if mt.text, err = template.New(name).Funcs(templateFuncs).Parse(src); err != nil {
				return nil, nil, fmt.Errorf("template %s: %w", path, err)
			}
			if mt.html, err = htmltemplate.New(name).Funcs(templateFuncs).Parse(src); err != nil {
				return nil, nil, fmt.Errorf("template %s: %w", path, err)
			}
			for _, part := range mt.text.Templates() {
				if err := known(path, part.Tree); err != nil {
					return nil, nil, err
				}
			}
			done.emails[path] = mt
		}
		for _, part := range []string{"subject", "plainBody"} {
			if err := mt.text.ExecuteTemplate(io.Discard, part, sample); err != nil {
				return nil, nil, fmt.Errorf("template %s (language %s): %w", path, l.tag, err)
			}
		}
		if err := mt.html.ExecuteTemplate(io.Discard, "htmlBody", sample); err != nil {
			return nil, nil, fmt.Errorf("template %s (language %s): %w", path, l.tag, err)
		}
		emails[kind] = mt
	}

	pages := map[string]*htmltemplate.Template{}
	layoutSrc, layoutPath, err := readTemplate(dir, l.tag, "layout.html")
	if err != nil {
		return nil, nil, fmt.Errorf("template %s: %w", layoutPath, err)
	}
	layout, ok := done.layouts[layoutPath]
	if !ok {
		if layout, err = htmltemplate.New("layout.html").Funcs(templateFuncs).Parse(layoutSrc); err != nil {
			return nil, nil, fmt.Errorf("template %s: %w", layoutPath, err)
		}
		if err := known(layoutPath, layout.Tree); err != nil {
			return nil, nil, err
		}
		done.layouts[layoutPath] = layout
	}
	var languages []languageLink
	for _, tag := range offered {
		languages = append(languages, languageLink{Tag: tag, Name: tag, Href: "/signup?lang=" + tag, Current: tag == l.tag})
	}
	samplePage := page{AppName: "Signup", locale: l, Switch: languages, Languages: languages, Title: "Sample", Lines: []string{"A line."}, Link: "/signup", LinkText: "Sign up",
		Form:   map[string]string{"name": "Sam", "email": "sam@example.com", "old": "sam@example.com", "new": "sam@example.org", "confirmed": "true"},
		Errors: map[string]string{"email": "must be provided"}, Name: "Sam", SignedUpAt: now, Token: "SAMPLE",
		Account: &user{ID: 1, Name: "Sam", Email: "sam@example.com"}, Since: now, Args: map[string]string{"App": "Grafana", "Email": "sam@example.com"},
		Apps:     []allowedApp{{ClientID: "0123", Name: "Grafana", Since: now}},
		Sessions: []loginSession{{ID: "0123456789abcdef", UserAgent: "Firefox", Current: true, Browser: true}, {ID: "fedcba9876543210"}}}
	for _, name := range pageFiles {
		src, path, err := readTemplate(dir, l.tag, name)
		if err != nil {
			return nil, nil, fmt.Errorf("template %s: %w", path, err)
		}
		pt, ok := done.pages[layoutPath+"\x00"+path]
		if !ok {
			pt = htmltemplate.Must(layout.Clone())
			if _, err := pt.New(name).Parse(src); err != nil {
				return nil, nil, fmt.Errorf("template %s: %w", path, err)
			}
			for _, part := range pt.Templates() {
				if err := known(path, part.Tree); err != nil {
					return nil, nil, err
				}
			}
			done.pages[layoutPath+"\x00"+path] = pt
		}
		if err := pt.ExecuteTemplate(io.Discard, "layout.html", samplePage); err != nil {
			return nil, nil, fmt.Errorf("template %s (in %s, language %s): %w", path, layoutPath, l.tag, err)
		}
		pages[name] = pt
	}
	return emails, pages, nil
}

// checkOverrides refuses a file in dir that overrides nothing: most likely
// a typo, which would otherwise be silently ignored. A directory is a
// language (its name a language tag; loadLocales reads its messages.json):
// its files override templates for that language alone.
func checkOverrides(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("-templates: %w", err)
	}
	known, _ := fs.Glob(templateFS, "templates/*.*")
	names := strings.ReplaceAll(strings.Join(known, ", "), "templates/", "")
	for _, e := range entries {
		if !e.IsDir() {
			if !slices.Contains(known, "templates/"+e.Name()) {
				return fmt.Errorf("-templates: %s overrides no template; the templates are %s, and a directory per language (de/, …) may hold them and messages.json",
					filepath.Join(dir, e.Name()), names)
			}
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("-templates: %w", err)
		}
		for _, f := range files {
			if f.Name() != "messages.json" && !slices.Contains(known, "templates/"+f.Name()) {
				return fmt.Errorf("-templates: %s overrides no template; a language's directory holds messages.json and the templates %s",
					filepath.Join(dir, e.Name(), f.Name()), names)
			}
		}
	}
	return nil
}
