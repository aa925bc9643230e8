package main

// languages.go is the languages of the pages and emails: each language's
// messages (templates/<lang>/messages.json, extended or overridden by
// -templates DIR/<lang>/messages.json), checked at start; the language of
// a request (the switch's ?lang= and its cookie, else Accept-Language);
// dates and waits as each language writes them.

import (
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"golang.org/x/text/language"
)

// shippedLanguages are the languages the binary carries, in the order the
// language switch shows them.
var shippedLanguages = []string{"en", "de", "fr"}

// languageCookie keeps the language a person chose with the switch.
const languageCookie = "signup_language"

// locale is one language: its messages, parsed, and how it writes a date.
type locale struct {
	tag      string
	name     string                            // the language's name in itself ("Deutsch")
	texts    map[string]string                 // every message, as written
	messages map[string]*template.Template     // those with data ({{.Email}}), parsed, but the _html ones
	html     map[string]*htmltemplate.Template // those whose key ends in _html: markup around escaped data
	weekdays []string                          // Sunday first
	months   []string                          // January first
}

// t is message key with data (a page, an email's data, or a map), as a
// string; an _html message as markup whose data is escaped.
func (l *locale) t(key string, data any) (any, error) {
	var b strings.Builder
	if h, ok := l.html[key]; ok {
		if err := h.Execute(&b, data); err != nil {
			return "", err
		}
		return htmltemplate.HTML(b.String()), nil
	}
	m, ok := l.messages[key]
	if !ok {
		text, ok := l.texts[key]
		switch {
		case !ok:
			return "", fmt.Errorf("no message %q in language %s", key, l.tag)
		case strings.HasSuffix(key, "_html"):
			return htmltemplate.HTML(text), nil
		}
		return text, nil
	}
	if err := m.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// text is message key with the values args, for the Go code's messages.
func (l *locale) text(key string, args map[string]string) (string, error) {
	s, err := l.t(key, args)
	if err != nil {
		return key, err
	}
	return fmt.Sprint(s), nil
}

// formatTime is how a page or email of this language writes a time:
// absolute, in UTC.
func (l *locale) formatTime(t time.Time) string {
	t = t.UTC()
	s, err := l.text("date.format", map[string]string{"Weekday": l.weekdays[t.Weekday()], "Day": strconv.Itoa(t.Day()),
		"Month": l.months[t.Month()-1], "Year": strconv.Itoa(t.Year()), "Time": t.Format("15:04")})
	if err != nil {
		return t.Format(time.RFC3339)
	}
	return s
}

// inWords is a wait of d as a person reads it, in whole minutes.
func (l *locale) inWords(d time.Duration) string {
	m := int(d.Minutes()) + 1
	key := "wait.minutes"
	if m == 1 {
		key = "wait.minute"
	}
	s, _ := l.text(key, map[string]string{"N": strconv.Itoa(m)})
	return s
}

// fieldError is a field's message as a sentence: the field's label (a
// message key) and what is wrong with it.
func (l *locale) fieldError(label, message string) (string, error) {
	field, err := l.text(label, nil)
	if err != nil {
		return "", err
	}
	return l.text("field.error", map[string]string{"Field": field, "Message": message})
}

// wrap breaks s into lines of at most 72 columns, for the plain part of
// an email, at ASCII spaces only: a no-break space (French puts one
// before a colon) holds its words together.
func wrap(s string) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.FieldsFunc(s, func(c rune) bool { return c == ' ' || c == '\n' || c == '\t' }) {
		w := len([]rune(word))
		switch {
		case n == 0:
		case n+1+w > 72:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += w
	}
	return b.String()
}

// loadLocales reads the messages of every language: the shipped ones,
// each extended or overridden key by key by dir/<lang>/messages.json, and
// any language dir adds. Every language must have every message English
// has, and no other; a message may use only the data English's does.
func loadLocales(dir string) (map[string]*locale, []string, error) {
	tags := slices.Clone(shippedLanguages)
	if dir != "" {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() && !slices.Contains(tags, e.Name()) {
				tags = append(tags, e.Name())
			}
		}
	}
	raw := map[string]map[string]string{}     // each language's messages, as written
	sources := map[string]map[string]string{} // the file each came from, for errors
	file := map[string]string{}               // the last file read of each language, for a message missing
	for _, tag := range tags {
		raw[tag], sources[tag] = map[string]string{}, map[string]string{}
		merge := func(b []byte, path string) error {
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("messages %s: %w", path, err)
			}
			for k, v := range m {
				raw[tag][k], sources[tag][k] = v, path
			}
			file[tag] = path
			return nil
		}
		if slices.Contains(shippedLanguages, tag) {
			path := "templates/" + tag + "/messages.json"
			b, err := templateFS.ReadFile(path)
			if err == nil {
				err = merge(b, path+" (embedded)")
			}
			if err != nil {
				return nil, nil, err
			}
		}
		if dir != "" {
			path := filepath.Join(dir, tag, "messages.json")
			b, err := os.ReadFile(path)
			switch {
			case err == nil:
				err = merge(b, path)
			case errors.Is(err, fs.ErrNotExist):
				err = nil
			}
			if err != nil {
				return nil, nil, fmt.Errorf("messages %s: %w", path, err)
			}
		}
		if file[tag] == "" {
			return nil, nil, fmt.Errorf("-templates: %s is not a language: a language needs its messages.json", filepath.Join(dir, tag))
		}
		if _, err := language.Parse(tag); err != nil {
			return nil, nil, fmt.Errorf("-templates: %s: %q is not a language tag (BCP 47, such as pt or pt-BR)", filepath.Join(dir, tag), tag)
		}
	}

	for _, k := range activityKinds { // named by the account page's template as "activity." + kind
		if _, ok := raw["en"]["activity."+string(k)]; !ok {
			return nil, nil, fmt.Errorf("messages %s: the message %q is missing", file["en"], "activity."+k)
		}
	}
	locales := map[string]*locale{}
	fields := map[string]map[string]map[string]bool{} // the data and functions each message of each language uses
	for _, tag := range tags {
		l := &locale{tag: tag, texts: raw[tag], messages: map[string]*template.Template{}, html: map[string]*htmltemplate.Template{}}
		fields[tag] = map[string]map[string]bool{}
		// One set of templates for the messages, one for the _html ones:
		// they share their functions, which a template each would copy.
		funcs := map[string]any{"formatTime": l.formatTime}
		texts := template.New("").Funcs(funcs).Option("missingkey=error")
		markups := htmltemplate.New("").Funcs(funcs).Option("missingkey=error")
		for _, key := range slices.Sorted(maps.Keys(raw[tag])) {
			src, path := raw[tag][key], sources[tag][key]
			if _, ok := raw["en"][key]; !ok {
				return nil, nil, fmt.Errorf("messages %s: %q is no message (English has no such key)", path, key)
			}
			// Most messages are words alone: only those with data are
			// parsed, which takes far more memory than their text.
			var tree *parse.Tree
			switch {
			case !strings.Contains(src, "{{"):
				continue
			case strings.HasSuffix(key, "_html"):
				h, err := markups.New(key).Parse(src)
				if err != nil {
					return nil, nil, fmt.Errorf("messages %s: %q: %w", path, key, err)
				}
				l.html[key], tree = h, h.Tree
			default:
				m, err := texts.New(key).Parse(src)
				if err != nil {
					return nil, nil, fmt.Errorf("messages %s: %q: %w", path, key, err)
				}
				l.messages[key], tree = m, m.Tree
			}
			fields[tag][key] = fieldsOf(tree)
		}
		for _, key := range slices.Sorted(maps.Keys(raw["en"])) {
			if _, ok := raw[tag][key]; !ok {
				return nil, nil, fmt.Errorf("messages %s: the message %q is missing", file[tag], key)
			}
		}
		l.name = raw[tag]["language.name"]
		l.weekdays = strings.Split(raw[tag]["date.weekdays"], ",")
		l.months = strings.Split(raw[tag]["date.months"], ",")
		if len(l.weekdays) != 7 || len(l.months) != 12 {
			return nil, nil, fmt.Errorf("messages %s: date.weekdays needs 7 names and date.months 12, separated by commas", sources[tag]["date.months"])
		}
		locales[tag] = l
	}
	// A translation may use only the data the English message uses: the
	// Go code and the templates give what English needs.
	for _, tag := range tags {
		for key, used := range fields[tag] {
			for f := range used {
				if !fields["en"][key][f] {
					return nil, nil, fmt.Errorf("messages %s: %q uses %s, which it is not given (English uses only %s)",
						sources[tag][key], key, f, strings.Join(slices.Sorted(maps.Keys(fields["en"][key])), ", "))
				}
			}
		}
	}
	return locales, tags, nil
}

// fieldsOf is the fields (.Name) and functions a message's template uses.
func fieldsOf(tree *parse.Tree) map[string]bool {
	used := map[string]bool{}
	walk(tree.Root, func(n parse.Node) {
		switch n := n.(type) {
		case *parse.FieldNode:
			used["."+strings.Join(n.Ident, ".")] = true
		case *parse.IdentifierNode:
			used[n.Ident] = true
		case *parse.TemplateNode:
			used["template"] = true
		}
	})
	return used
}

// messageKeys is the message keys a template's $.T and $.FieldError calls
// name, so that a key no language has stops the start.
func messageKeys(tree *parse.Tree) []string {
	var keys []string
	if tree == nil {
		return nil
	}
	walk(tree.Root, func(n parse.Node) {
		c, ok := n.(*parse.CommandNode)
		if !ok || len(c.Args) < 2 {
			return
		}
		var method []string
		switch f := c.Args[0].(type) {
		case *parse.VariableNode: // $.T
			method = f.Ident
		case *parse.FieldNode: // .T
			method = f.Ident
		}
		key, isString := c.Args[1].(*parse.StringNode)
		if isString && len(method) > 0 && (method[len(method)-1] == "T" || method[len(method)-1] == "FieldError") {
			keys = append(keys, key.Text)
		}
	})
	return keys
}

// walk calls visit for n and every node within it.
func walk(n parse.Node, visit func(parse.Node)) {
	visit(n)
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walk(c, visit)
			}
		}
	case *parse.ActionNode:
		walk(n.Pipe, visit)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walk(c, visit)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, visit)
		}
	case *parse.IfNode:
		walk(n.Pipe, visit)
		walk(n.List, visit)
		walk(n.ElseList, visit)
	case *parse.RangeNode:
		walk(n.Pipe, visit)
		walk(n.List, visit)
		walk(n.ElseList, visit)
	case *parse.WithNode:
		walk(n.Pipe, visit)
		walk(n.List, visit)
		walk(n.ElseList, visit)
	}
}

// locale is the language of request r: the one the switch names (?lang=),
// else the one its cookie keeps, else the best of Accept-Language as
// golang.org/x/text/language's matcher judges it (de-AT finds de), else
// -default-language.
func (app *application) locale(r *http.Request) *locale {
	l, _ := app.askedLocale(r)
	return l
}

// askedLocale is locale(r), and whether r asked for it (by the switch, the
// cookie or Accept-Language) rather than getting -default-language.
func (app *application) askedLocale(r *http.Request) (*locale, bool) {
	offered := app.templates.offered
	if tag := r.URL.Query().Get("lang"); slices.Contains(offered, tag) {
		return app.templates.locales[tag], true
	}
	if c, err := r.Cookie(languageCookie); err == nil && slices.Contains(offered, c.Value) {
		return app.templates.locales[c.Value], true
	}
	if accept := r.Header.Get("Accept-Language"); accept != "" {
		if tags, _, err := language.ParseAcceptLanguage(accept); err == nil && len(tags) > 0 {
			_, i, confidence := app.templates.matcher.Match(tags...)
			if confidence != language.No {
				return app.templates.locales[offered[i]], true
			}
		}
	}
	return app.templates.locales[offered[0]], false
}

// accountLanguage is the language to store with an account that r makes:
// the one r asked for, or "" (-default-language, whichever it is when an
// email is sent).
func (app *application) accountLanguage(r *http.Request) string {
	if l, asked := app.askedLocale(r); asked {
		return l.tag
	}
	return ""
}

// localeOf is the language of the emails about u: the one stored with
// the account, else -default-language.
func (t *templates) localeOf(u *user) *locale {
	if slices.Contains(t.offered, u.language) {
		return t.locales[u.language]
	}
	return t.locales[t.offered[0]]
}

// keepLanguage keeps the language the switch chose (?lang=) in a cookie
// for a year: a preference of this browser, nothing stored here.
func (app *application) keepLanguage(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("lang")
	if !slices.Contains(app.templates.offered, tag) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: languageCookie, Value: tag, Path: "/", MaxAge: 365 * 24 * 3600,
		HttpOnly: true, Secure: strings.HasPrefix(app.cfg.baseURL, "https://"), SameSite: http.SameSiteLaxMode})
}

// languageLink is one language in the switch: this page in it.
type languageLink struct {
	Tag, Name, Href string
	Current         bool // the account's language, on the account page
}

// tokenPages open with an emailed link's token: their switch, after a
// POST, goes to the start page rather than to the page without its token.
var tokenPages = []string{"/activate", "/reset-password", "/confirm-email"}

// languageLinks is the switch of a page for r, in language l: every other
// language offered, each a link to this page (its query kept) in it.
func (app *application) languageLinks(r *http.Request, l *locale) []languageLink {
	var links []languageLink
	for _, tag := range app.templates.offered {
		if tag == l.tag {
			continue
		}
		q := url.Values{}
		path := r.URL.Path
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			q = r.URL.Query()
			if rt := app.returnTo(q.Get("return_to")); rt != "" {
				q.Set("return_to", rt) // as the page keeps it: an allowed one only
			} else {
				q.Del("return_to")
			}
		case slices.Contains(tokenPages, path) || strings.HasPrefix(path, "/account/"):
			path = "/"
		}
		q.Set("lang", tag)
		links = append(links, languageLink{Tag: tag, Name: app.templates.locales[tag].name, Href: path + "?" + q.Encode()})
	}
	return links
}

// page writes p's message keys (Title, Lines, LinkText, Errors) in l,
// with p.Args and the app's name as their data.
func (l *locale) page(p *page) error {
	p.locale = l
	args := map[string]string{"AppName": p.AppName}
	maps.Copy(args, p.Args)
	var errs []error
	text := func(key string) string {
		s, err := l.text(key, args)
		errs = append(errs, err)
		return s
	}
	p.Title = text(p.Title)
	lines := make([]string, len(p.Lines))
	for i, key := range p.Lines {
		lines[i] = text(key)
	}
	p.Lines = lines
	if p.LinkText != "" {
		p.LinkText = text(p.LinkText)
	}
	var err error
	p.Errors, err = l.errors(p.Errors, args)
	return errors.Join(append(errs, err)...)
}

// errors writes a message key per field in l.
func (l *locale) errors(keys map[string]string, args map[string]string) (map[string]string, error) {
	if keys == nil {
		return nil, nil
	}
	out := make(map[string]string, len(keys))
	var errs []error
	for field, key := range keys {
		s, err := l.text(key, args)
		errs = append(errs, err)
		out[field] = s
	}
	return out, errors.Join(errs...)
}

// Lang is the page's language tag, for lang="…".
func (p page) Lang() string { return p.locale.tag }

// Lang is the email's language tag, for lang="…".
func (d mailData) Lang() string { return d.locale.tag }

// T is message key in the page's language, with data (the page, or
// what the template has at hand) for its placeholders: $.T in a template.
func (p page) T(key string, data ...any) (any, error) { return p.locale.t(key, first(data)) }

// FieldError is a field's message as a sentence: $.FieldError.
func (p page) FieldError(label, message string) (string, error) {
	return p.locale.fieldError(label, message)
}

// FormatTime is a time as the page's language writes it: $.FormatTime.
func (p page) FormatTime(t time.Time) string { return p.locale.formatTime(t) }

// T is message key in the email's language: $.T in an email template.
func (d mailData) T(key string, data ...any) (any, error) { return d.locale.t(key, first(data)) }

// first is data's first value, or nil.
func first(data []any) any {
	if len(data) == 0 {
		return nil
	}
	return data[0]
}
