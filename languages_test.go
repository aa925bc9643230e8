package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/chromedp/chromedp"
)

// wordsOf is the words of s, lowercased: runs of letters, apostrophes
// within them split.
func wordsOf(s string) map[string]bool {
	words := map[string]bool{}
	for _, w := range strings.FieldsFunc(s, func(c rune) bool { return !unicode.IsLetter(c) }) {
		words[strings.ToLower(w)] = true
	}
	return words
}

// visibleText is what a person reads or hears of an HTML page: its text,
// its title, and the labels of its controls.
func visibleText(page string) string {
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?:aria-label|title)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		b.WriteString(html.UnescapeString(m[1]) + " ")
	}
	page = regexp.MustCompile(`(?s)<style.*?</style>|href="[^"]*"`).ReplaceAllString(page, " ")
	b.WriteString(html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page, " ")))
	return b.String()
}

// foreignWords is the words of text that are neither in language l's
// messages nor in data (names, addresses, the app's name): English left
// behind, or a message missing. Links are left out.
func foreignWords(l *locale, text string, data ...string) []string {
	known := map[string]bool{}
	for _, text := range l.texts {
		maps.Copy(known, wordsOf(text))
	}
	maps.Copy(known, wordsOf(strings.Join(data, " ")))
	text = regexp.MustCompile(`https?://\S+`).ReplaceAllString(text, " ")
	var foreign []string
	for w := range wordsOf(text) {
		if !known[w] && len(w) > 1 {
			foreign = append(foreign, w)
		}
	}
	slices.Sort(foreign)
	return foreign
}

// TestEveryLanguageIsComplete: every shipped language has every message,
// each translated (not English's text); every page template in every
// branch and every email renders in it with no English word left and no
// message missing; dates are written as the language writes them.
func TestEveryLanguageIsComplete(t *testing.T) {
	t.Parallel()
	tmpl := embeddedTemplates(t)
	if !slices.Equal(tmpl.offered, []string{"en", "de", "fr"}) {
		t.Fatalf("offered %v, want en de fr", tmpl.offered)
	}
	en := tmpl.locales["en"]
	// The same word in both: "Name", "{{.N}} minutes".
	sameAsEnglish := map[string][]string{"de": {"field.name", "field.code", "passkeys.heading", "passkeys.which"}, "fr": {"wait.minutes", "field.code"}}
	// Data, and the switch, which names each language in itself.
	data := []string{"Signup", "Sam Sample", "sam@example.com", "sam@example.org", "Firefox", "English", "Grafana"}
	when := time.Date(2026, 12, 4, 20, 18, 0, 0, time.UTC)
	wantDate := map[string]string{"en": "Friday 4 December 2026 at 20:18 UTC", "de": "Freitag, 4. Dezember 2026 um 20:18 UTC", "fr": "vendredi 4 décembre 2026 à 20:18 UTC"}

	for _, tag := range shippedLanguages {
		l := tmpl.locales[tag]
		if got := l.formatTime(when); got != wantDate[tag] {
			t.Errorf("%s: the date is %q, want %q", tag, got, wantDate[tag])
		}
		if tag == "en" {
			continue
		}
		for key, english := range en.texts {
			if text, ok := l.texts[key]; !ok {
				t.Errorf("%s: message %q missing", tag, key)
			} else if text == english && !slices.Contains(sameAsEnglish[tag], key) {
				t.Errorf("%s: message %q is English's: %q", tag, key, text)
			}
		}

		// Every page, with every branch taken: every field in error, the
		// activation asking for the password again, both kinds of session.
		errs := validator{}
		for _, f := range []string{"form", "name", "email", "password", "confirm", "current_password", "language"} {
			errs[f] = "error.required"
		}
		for _, name := range pageFiles {
			sections := []string{""}
			if name == "account.html" { // each form shows its errors in turn
				sections = []string{"password", "email", "delete", "language"}
			}
			for _, section := range sections {
				p := page{AppName: "Signup", Title: "account.title", Lines: []string{"account.sessions.ended"}, Link: "/signup", LinkText: "signup.lost_link",
					Switch: []languageLink{{Tag: "en", Name: "English", Href: "/signup?lang=en"}}, Errors: errs,
					Form: map[string]string{"name": "Sam Sample", "email": "sam@example.com", "confirm": "yes", "old": "sam@example.com", "new": "sam@example.org", "confirmed": "true", "section": section},
					Name: "Sam Sample", SignedUpAt: when, Token: "T", Account: &user{Name: "Sam Sample", Email: "sam@example.com"}, Since: when,
					Args: map[string]string{"App": "Grafana", "Email": "sam@example.com"}, Apps: []allowedApp{{ClientID: "c", Name: "Grafana", Since: when}},
					Languages: []languageLink{{Tag: tag, Name: l.name, Current: true}},
					Sessions:  []loginSession{{ID: "a", UserAgent: "Firefox", Browser: true, Current: true, CreatedAt: when, LastUsed: when}, {ID: "b", CreatedAt: when, LastUsed: when}}}
				if err := l.page(&p); err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				if err := tmpl.pages[tag][name].ExecuteTemplate(&b, "layout.html", p); err != nil {
					t.Fatalf("%s %s: %v", tag, name, err)
				}
				if w := foreignWords(l, visibleText(b.String()), data...); len(w) > 0 {
					t.Errorf("%s %s: words not of the language: %v\n%s", tag, name, w, visibleText(b.String()))
				}
				if !strings.Contains(b.String(), `<html lang="`+tag+`">`) {
					t.Errorf("%s %s: no lang=%q", tag, name, tag)
				}
			}
		}

		// Every email.
		app := testComposer(t)
		for kind := range emailKinds {
			e, err := app.email(kind, &user{ID: 7, Name: "Sam Sample", Email: "sam@example.com", language: tag,
				oldEmail: "sam@example.com", newEmail: "sam@example.org"}, "TOKEN", when)
			if err != nil {
				t.Fatal(err)
			}
			plain, htmlPart := parts(t, e.Message)
			subject := decodedSubject(t, e.Message)
			for part, text := range map[string]string{"subject": subject, "plain": plain, "html": visibleText(htmlPart)} {
				if w := foreignWords(l, text, data...); len(w) > 0 {
					t.Errorf("%s %s (%s): words not of the language: %v\n%s", tag, kind, part, w, text)
				}
			}
			if !strings.Contains(htmlPart, `<html lang="`+tag+`">`) {
				t.Errorf("%s %s: the HTML part has no lang=%q", tag, kind, tag)
			}
			if emailKinds[kind].scope != "" && !strings.Contains(strings.Join(strings.Fields(plain), " "), strings.Join(strings.Fields(l.formatTime(when.Add(emailKinds[kind].ttl))), " ")) {
				t.Errorf("%s %s: no expiry written in the language:\n%s", tag, kind, plain)
			}
		}
	}
}

// decodedSubject is a message's Subject, its encoded words decoded.
func decodedSubject(t *testing.T, msg []byte) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(subjectOf(msg))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// langGet is a GET of path with Accept-Language accept (and the cookies
// of v), checked for the page's language: its lang, Content-Language and
// no word of another language.
func langGet(t *testing.T, v *visitor, l *locale, path, accept string) pageAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", v.base+path, nil)
	if accept != "" {
		req.Header.Set("Accept-Language", accept)
	}
	a := v.do(req)
	checkLanguage(t, l, path, a)
	return a
}

// checkLanguage fails the test unless page a is in language l.
func checkLanguage(t *testing.T, l *locale, what string, a pageAnswer, data ...string) {
	t.Helper()
	if got := a.header.Get("Content-Language"); got != l.tag {
		t.Errorf("%s: Content-Language %q, want %s", what, got, l.tag)
	}
	if !strings.Contains(a.body, `<html lang="`+l.tag+`">`) {
		t.Errorf("%s: not lang=%q:\n%s", what, l.tag, a.body)
	}
	if w := foreignWords(l, visibleText(a.body), append(data, "Signup", "English", "Deutsch", "Français")...); len(w) > 0 {
		t.Errorf("%s in %s: words not of the language: %v\n%s", what, l.tag, w, visibleText(a.body))
	}
}

// TestPagesFollowTheBrowser: a page is in the best language of
// Accept-Language as x/text's matcher has it (weights, de-AT → de), else
// -default-language; the switch on every page leads to the page in each
// other language and keeps the choice in a cookie, which wins from then
// on; -languages limits what is offered. The pages a person meets, and
// their messages from the Go code, have no English left.
func TestPagesFollowTheBrowser(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	loc := app.templates.locales
	v := newVisitor(t, app.url)
	for accept, want := range map[string]string{
		"":                          "en",
		"de-AT":                     "de",
		"de-CH, en;q=0.5":           "de",
		"fr-CA,fr;q=0.9,en;q=0.8":   "fr",
		"en;q=0.3, fr;q=0.9":        "fr",
		"ja, pt-BR;q=0.9":           "en",
		"ja, de;q=0.1":              "de",
		"*":                         "en",
		"not a language header!!!!": "en",
	} {
		langGet(t, v, loc[want], "/signup", accept)
	}
	for _, tag := range []string{"de", "fr"} {
		l := loc[tag]
		for _, path := range []string{"/signup", "/login", "/resend", "/forgot-password", "/activate?token=nope", "/reset-password?token=nope",
			"/confirm-email?token=nope", "/no-such-page", "/login?return_to=%2Faccount"} {
			langGet(t, v, l, path, tag)
		}
		// The messages of the Go code: a signup's answers, the form's field
		// errors, the emailed pages, a failed login.
		post := func(path string, values url.Values) pageAnswer {
			req, _ := http.NewRequest("POST", v.base+path, strings.NewReader(values.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			req.Header.Set("Accept-Language", tag)
			return v.do(req)
		}
		for _, c := range []struct {
			path   string
			values url.Values
			status int
			data   []string
		}{
			{"/signup", url.Values{"name": {""}, "email": {"x"}, "password": {"short"}}, 422, nil},
			{"/signup", url.Values{"name": {"Lang Tester"}, "email": {tag + "@example.com"}, "password": {"pa55word1234"}}, 200, []string{tag + "@example.com"}},
			{"/resend", url.Values{"email": {tag + "@example.com"}}, 200, []string{tag + "@example.com"}},
			{"/forgot-password", url.Values{"email": {tag + "@example.com"}}, 200, []string{tag + "@example.com"}},
			{"/forgot-password", url.Values{"email": {"bad"}}, 422, nil},
			{"/login", url.Values{"email": {tag + "@example.com"}, "password": {"pa55word1234"}}, 401, nil},
			{"/activate", url.Values{"token": {"nope"}, "action": {"activate"}, "password": {"pa55word1234"}}, 422, nil},
			{"/activate", url.Values{"token": {"nope"}, "action": {"other"}}, 400, nil},
			{"/reset-password", url.Values{"token": {"nope"}, "password": {"pa55word1234"}}, 422, nil},
			{"/confirm-email", url.Values{"token": {"nope"}, "action": {"cancel"}}, 422, nil},
		} {
			a := post(c.path, c.values)
			if a.status != c.status {
				t.Errorf("%s POST %s: %d, want %d", tag, c.path, a.status, c.status)
			}
			checkLanguage(t, l, "POST "+c.path, a, append(c.data, "Lang", "Tester")...)
		}
		// The API's field errors too.
		req, _ := http.NewRequest("POST", app.url+"/v1/users", strings.NewReader(`{"name":"","email":"x","password":"pa55word1234"}`))
		req.Header.Set("Accept-Language", tag+"-BE")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error map[string]string }
		json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		want, _ := l.text("error.required", nil)
		if res.StatusCode != 422 || body.Error["name"] != want || res.Header.Get("Content-Language") != tag {
			t.Errorf("the API in %s: %d %v (Content-Language %q), want the name %q", tag, res.StatusCode, body.Error, res.Header.Get("Content-Language"), want)
		}
	}

	// The switch: every other language, as a link to this page in it; its
	// choice is kept and wins over Accept-Language.
	a := langGet(t, v, loc["en"], "/activate?token=abc", "en")
	for _, link := range []string{`href="/activate?lang=de&amp;token=abc" lang="de" hreflang="de">Deutsch</a>`, `href="/activate?lang=fr&amp;token=abc" lang="fr" hreflang="fr">Français</a>`} {
		if !strings.Contains(a.body, link) {
			t.Errorf("no switch link %s:\n%s", link, a.body)
		}
	}
	if strings.Contains(a.body, `hreflang="en"`) {
		t.Error("the switch offers the page's own language")
	}
	langGet(t, v, loc["de"], "/activate?lang=de&token=abc", "en")
	if v.cookie(languageCookie) != "de" {
		t.Errorf("the language cookie is %q, want de", v.cookie(languageCookie))
	}
	langGet(t, v, loc["de"], "/login", "fr, en")
	langGet(t, v, loc["fr"], "/login?lang=fr", "de")
	langGet(t, v, loc["fr"], "/signup", "de")
	if a := langGet(t, v, loc["fr"], "/login?return_to=%2F%2Fevil.example", ""); strings.Contains(a.body, "evil") {
		t.Error("the switch kept a return_to that is not allowed")
	}

	// -languages and -default-language.
	limited := newTestApp(t, srv, func(cfg *config) { cfg.languages, cfg.defaultLanguage = []string{"de", "en"}, "de" })
	lv := newVisitor(t, limited.url)
	langGet(t, lv, loc["de"], "/signup", "fr, ja")
	langGet(t, lv, loc["en"], "/signup", "en-GB")
	if a := langGet(t, lv, loc["de"], "/signup?lang=fr", ""); strings.Contains(a.body, "Français") {
		t.Error("a language not offered is in the switch")
	}
}

// TestEmailsInThePersonsLanguage: a signup in German gets its welcome
// email in German, and so does its password reset a week later, asked for
// by the API in English, and the "password changed" email; the owner of an
// address gets "account exists" in the owner's language whoever signs up
// with it; the language chosen on the account page is the emails' from
// then on (the "account deleted" notice too), and an account without one
// gets -default-language.
func TestEmailsInThePersonsLanguage(t *testing.T) {
	t.Parallel()
	srv := startSMTP(t, nil)
	app := newTestApp(t, srv, nil)
	de, fr := app.templates.locales["de"], app.templates.locales["fr"]
	subject := func(l *locale, key string) string {
		s, _ := l.text(key, map[string]string{"AppName": app.cfg.appName})
		return s
	}
	inLanguage := func(l *locale, m received, key string) {
		t.Helper()
		plain, htmlPart := parts(t, m.data)
		if got := decodedSubject(t, m.data); got != subject(l, key) {
			t.Errorf("subject %q, want %q", got, subject(l, key))
		}
		if w := foreignWords(l, plain, "Signup", "Hanna", "Schmidt"); len(w) > 0 {
			t.Errorf("%s email not in %s: %v\n%s", key, l.tag, w, plain)
		}
		if !strings.Contains(htmlPart, `lang="`+l.tag+`"`) {
			t.Errorf("%s email's HTML is not lang=%s", key, l.tag)
		}
	}

	// A German browser signs up on the page.
	v := newVisitor(t, app.url)
	req, _ := http.NewRequest("POST", app.url+"/signup", strings.NewReader(url.Values{"name": {"Hanna Schmidt"}, "email": {"hanna@example.com"}, "password": {"pa55word1234"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept-Language", "de-DE,de;q=0.9,en;q=0.5")
	if a := v.do(req); a.status != 200 {
		t.Fatalf("signup: %d", a.status)
	}
	welcome := waitFor1(t, srv, "hanna@example.com", "Aktivieren")
	inLanguage(de, welcome, "welcome.subject")
	activate(t, app.url, welcome)

	// A week later, a reset asked for by the API, in English.
	week := time.Now().Add(7 * 24 * time.Hour)
	app.setClock(func() time.Time { return week })
	req, _ = http.NewRequest("POST", app.url+"/v1/tokens/password-reset", strings.NewReader(`{"email":"hanna@example.com"}`))
	req.Header.Set("Accept-Language", "en")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	reset := waitFor1(t, srv, "hanna@example.com", "Passwort")
	inLanguage(de, reset, "reset.subject")
	if !strings.Contains(strings.Join(strings.Fields(mustPlain(t, reset)), " "), strings.Join(strings.Fields(de.formatTime(week.Add(resetTTL))), " ")) {
		t.Errorf("the reset's expiry is not written in German:\n%s", mustPlain(t, reset))
	}
	_, token := linkOf(t, reset.data)
	if status, _ := post(t, "PUT", app.url+"/v1/users/password", map[string]string{"token": token, "password": "n3w-pa55word"}); status != 200 {
		t.Fatalf("reset: %d", status)
	}
	inLanguage(de, waitFor1(t, srv, "hanna@example.com", "wurde"), "changed.subject")

	// Someone signs up with her address from a French browser: she is told
	// in German.
	req, _ = http.NewRequest("POST", app.url+"/v1/users", strings.NewReader(`{"name":"Autre","email":"hanna@example.com","password":"pa55word1234"}`))
	req.Header.Set("Accept-Language", "fr")
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	inLanguage(de, waitFor1(t, srv, "hanna@example.com", "registrieren"), "exists.subject")

	// She chooses French on her account page: the page and the emails
	// follow.
	v.logIn("hanna@example.com", "n3w-pa55word")
	a := v.post("/account/language", url.Values{"language": {"fr"}})
	if a.status != 200 {
		t.Fatalf("the language form: %d\n%s", a.status, a.body)
	}
	checkLanguage(t, fr, "the account page after choosing French", a, "Hanna", "Schmidt", "hanna@example.com", "Go-http-client")
	if !strings.Contains(a.body, `<option value="fr" lang="fr" selected>`) {
		t.Errorf("the account page does not show French chosen:\n%s", a.body)
	}
	if a := v.post("/account/language", url.Values{"language": {"xx"}}); a.status != 422 {
		t.Errorf("an unknown language: %d, want 422", a.status)
	}
	later := week.Add(2 * time.Hour) // the address's send budget: 3 an hour
	app.setClock(func() time.Time { return later })
	if status, _ := post(t, "POST", app.url+"/v1/tokens/password-reset", map[string]string{"email": "hanna@example.com"}); status != 202 {
		t.Fatalf("reset: %d", status)
	}
	inLanguage(fr, waitFor1(t, srv, "hanna@example.com", "initialisez"), "reset.subject")
	// And so does the notice that outlives the account.
	if a := v.post("/account/delete", url.Values{"current_password": {"n3w-pa55word"}}); a.status != 200 {
		t.Fatalf("delete: %d\n%s", a.status, a.body)
	}
	inLanguage(fr, waitFor1(t, srv, "hanna@example.com", "supprim"), "deleted.subject")

	// A signup that asks for no language (a script without
	// Accept-Language) stores none: its emails follow -default-language,
	// as those of an account made before there were languages.
	signup(t, app.url, "old@example.com")
	var stored string
	mustScan(t, app.store.write.QueryRow(`SELECT language FROM users WHERE email = 'old@example.com'`), &stored)
	if stored != "" {
		t.Errorf("a signup that asked for no language stored %q", stored)
	}

	post(t, "POST", app.url+"/v1/tokens/activation", map[string]string{"email": "old@example.com"})
	if m := waitFor1(t, srv, "old@example.com", "activation link"); !strings.Contains(decodedSubject(t, m.data), "Your new") {
		t.Errorf("an account without a language: %q", decodedSubject(t, m.data))
	}
}

// mustPlain is a message's plain part.
func mustPlain(t *testing.T, m received) string {
	t.Helper()
	plain, _ := parts(t, m.data)
	return plain
}

// TestLanguageOverrides: -templates overrides a template for one language
// (DIR/de/welcome.tmpl), changes a message (DIR/de/messages.json) and adds
// a language (DIR/pt/messages.json), offered at once; a language that
// misses a message, a broken file, a message using data it is not given,
// or a language asked for that is not there stops the start with exit 2,
// naming it.
func TestLanguageOverrides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "templates")
	os.MkdirAll(filepath.Join(tmpl, "de"), 0o755)
	os.MkdirAll(filepath.Join(tmpl, "pt"), 0o755)
	welcome, _ := templateFS.ReadFile("templates/welcome.tmpl")
	os.WriteFile(filepath.Join(tmpl, "de", "welcome.tmpl"), []byte(strings.Replace(string(welcome),
		`{{define "subject"}}{{$.T "welcome.subject" .}}{{end}}`, `{{define "subject"}}Willkommen an Bord von {{.AppName}}{{end}}`, 1)), 0o644)
	os.WriteFile(filepath.Join(tmpl, "de", "messages.json"), []byte(`{"signup.title": "Jetzt mitmachen"}`), 0o644)
	pt := portuguese(t)
	os.WriteFile(filepath.Join(tmpl, "pt", "messages.json"), pt, 0o644)

	srv := startSMTP(t, nil)
	p := startRun(t, append(baseArgs(dir), append(smtpArgs(srv.host, srv.port), "-templates", tmpl)...), nil)
	getIn := func(accept, path string) string {
		req, _ := http.NewRequest("GET", p.url+path, nil)
		req.Header.Set("Accept-Language", accept)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if body := getIn("de", "/signup"); !strings.Contains(body, "<h1>Jetzt mitmachen</h1>") || !strings.Contains(body, "Passwort") {
		t.Errorf("the German message override is not used, or the rest of German is lost:\n%s", body)
	}
	if body := getIn("pt-BR", "/signup"); !strings.Contains(body, `<html lang="pt">`) || !strings.Contains(body, "<h1>Crie a sua conta</h1>") {
		t.Errorf("the added language is not served:\n%s", body)
	}
	if body := getIn("en", "/signup"); !strings.Contains(body, `hreflang="pt">Português</a>`) {
		t.Errorf("the added language is not in the switch:\n%s", body)
	}
	req, _ := http.NewRequest("POST", p.url+"/v1/users", strings.NewReader(`{"name":"Max","email":"max@example.com","password":"pa55word1234"}`))
	req.Header.Set("Accept-Language", "de")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	signup(t, p.url, "ana@example.com") // English: the embedded welcome
	if m := waitFor1(t, srv, "max@example.com", "Willkommen an Bord"); !strings.Contains(mustPlain(t, m), "Hallo Max") {
		t.Errorf("the German override lost the German messages:\n%s", mustPlain(t, m))
	}
	waitFor1(t, srv, "ana@example.com", "Activate your")

	// What stops the start.
	var ptMessages map[string]string
	json.Unmarshal(pt, &ptMessages)
	without := maps.Clone(ptMessages)
	delete(without, "login.title")
	missing, _ := json.Marshal(without)
	badField := maps.Clone(ptMessages)
	badField["signup.sent.text"] = "Enviámos um email para {{.Emial}}."
	badFieldJSON, _ := json.Marshal(badField)
	for _, c := range []struct {
		file, content string
		args          []string
		says          string
	}{
		{"pt/messages.json", string(missing), nil, `"login.title" is missing`},
		{"pt/messages.json", `{"signup.title": "Crie"`, nil, "pt/messages.json"},
		{"pt/messages.json", string(badFieldJSON), nil, `"signup.sent.text" uses .Emial`},
		{"de/messages.json", `{"signup.titel": "Tippfehler"}`, nil, `"signup.titel" is no message`},
		{"de/messages.json", `{"signup.title": "{{.AppName"}`, nil, `"signup.title"`},
		{"de/welcome.tmpl", `{{define "subject"}}{{$.T "welcome.subjekt" .}}{{end}}`, nil, `no message "welcome.subjekt"`},
		{"de/welcom.tmpl", `typo`, nil, "de/welcom.tmpl overrides no template"},
		{"klingon!/messages.json", `{}`, nil, "is not a language tag"},
		{"xx/signup.html", `{{define "content"}}{{end}}`, nil, "a language needs its messages.json"},
		{"", "", []string{"-languages", "en jp"}, `-languages: "jp" is not a language here`},
		{"", "", []string{"-languages", "en de", "-default-language", "fr"}, `-default-language: "fr" is not one of the languages offered`},
	} {
		bad := t.TempDir()
		args := append(baseArgs(t.TempDir()), c.args...)
		if c.file != "" {
			os.MkdirAll(filepath.Dir(filepath.Join(bad, c.file)), 0o755)
			os.WriteFile(filepath.Join(bad, c.file), []byte(c.content), 0o644)
			args = append(args, "-templates", bad)
		}
		cmd := exec.Command(builtBinary(t), args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), c.says) {
			t.Errorf("%s %v: exit %d, output %q; want exit 2 saying %q", c.file, c.args, code, out, c.says)
		}
	}
}

// portuguese is a complete catalogue for a language the binary does not
// ship: English's messages, marked, with a few real ones.
func portuguese(t *testing.T) []byte {
	t.Helper()
	b, _ := templateFS.ReadFile("templates/en/messages.json")
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		m[k] = "[pt] " + v
	}
	m["language.name"], m["signup.title"] = "Português", "Crie a sua conta"
	m["date.weekdays"] = "domingo,segunda-feira,terça-feira,quarta-feira,quinta-feira,sexta-feira,sábado"
	m["date.months"] = "janeiro,fevereiro,março,abril,maio,junho,julho,agosto,setembro,outubro,novembro,dezembro"
	out, _ := json.Marshal(m)
	return out
}

// TestBrowserInGerman: a Chromium started with --lang=de gets the signup
// page in German, without being asked; and every page a person meets is
// accessible (axe-core) in every shipped language, logged in or not.
func TestBrowserInGerman(t *testing.T) {
	t.Parallel()
	// Chromium on Linux takes its language from LANGUAGE as much as --lang,
	// and needs its German resources (Debian: chromium-l10n) to use it.
	ctx := browser(t, chromedp.Flag("lang", "de"), chromedp.Env("LANGUAGE=de"))
	dir := t.TempDir()
	mail := filepath.Join(dir, "mail")
	p := startBinary(t, []string{"-db", filepath.Join(dir, "signup.db"), "-port", "0", "-bcrypt-cost", "4", "-mail-dir", mail, "-limiter-enabled=false"})
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, p.logs)
		}
	}
	eval := func(js string) string {
		t.Helper()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	step("open the signup page", chromedp.Navigate(p.url+"/signup"), chromedp.WaitVisible(`h1`))
	if lang, h1 := eval(`document.documentElement.lang`), eval(`document.querySelector("h1").textContent`); lang != "de" || h1 != "Konto anlegen" {
		t.Fatalf("Chromium with --lang=de (navigator.languages %s) got lang=%q, h1 %q", eval(`navigator.languages.join()`), lang, h1)
	}

	// A signup in German, then every page in every language through the
	// switch's ?lang=, and the account page once activated.
	step("sign up", chromedp.SendKeys(`#name`, "Jo Tester"), chromedp.SendKeys(`#email`, "jo@example.com"),
		chromedp.SendKeys(`#password`, "pa55word1234"), chromedp.Click(`button[type=submit]`), chromedp.WaitVisible(`//h1[text()="Sehen Sie in Ihr Postfach"]`))
	checkAxe(t, ctx, "check your inbox, in German")
	_, token := linkOf(t, captured(t, mail, "jo@example.com", "Aktivieren"))
	for _, tag := range shippedLanguages {
		for _, path := range []string{"/signup", "/login", "/resend", "/forgot-password", "/activate?token=" + token, "/reset-password?token=DEAD", "/no-such-page"} {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			step("open "+path+" in "+tag, chromedp.Navigate(p.url+path+sep+"lang="+tag), chromedp.WaitVisible(`h1`))
			if got := eval(`document.documentElement.lang`); got != tag {
				t.Errorf("%s?lang=%s: lang=%q", path, tag, got)
			}
			checkAxe(t, ctx, fmt.Sprintf("%s in %s", path, tag))
		}
	}
	step("activate", chromedp.Navigate(p.url+"/activate?token="+token), chromedp.WaitVisible(`button[value=activate]`),
		chromedp.SendKeys(`#password`, "pa55word1234"), chromedp.Click(`button[value=activate]`), chromedp.WaitVisible(`main a`))
	locales := embeddedTemplates(t).locales
	for _, tag := range shippedLanguages {
		want, _ := locales[tag].text("account.title", nil)
		step("the account page in "+tag, chromedp.Navigate(p.url+"/account?lang="+tag), chromedp.WaitVisible(`//h1[text()="`+want+`"]`))
		checkAxe(t, ctx, "/account in "+tag)
	}
}
