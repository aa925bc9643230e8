package main

// cmd_users.go is `signup users`: the operator's view of the accounts —
// list, show, disable, enable, delete, invite, export and import — beside
// the serving process or without one, on SQLite and PostgreSQL.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// usersUsage is how `signup users` is called.
const usersUsage = `users list [-status pending|active|disabled] [-q TEXT] [-json] | users show ID|EMAIL [-json] |
  users disable ID|EMAIL | users enable ID|EMAIL | users delete ID|EMAIL | users invite EMAIL [-name NAME] |
  users export [-json] | users import FILE`

// cmdUsers runs `signup users …` with the database and webhook of cfg.
// Emails it causes (an invitation, "account deleted") are queued for the
// serving process to compose and send with its own configuration; webhook
// events go to cfg's -webhook-url, so run it with the service's
// environment.
func cmdUsers(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	err := users(ctx, cfg, args, stdout)
	if errors.Is(err, errUsage) { // main prints the others
		fmt.Fprintln(stderr, "signup:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	return err
}

// users is cmdUsers but for printing a usage error.
func users(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	usage := fmt.Errorf("%w: %s", errUsage, usersUsage)
	if len(args) == 0 {
		return usage
	}
	fs := flag.NewFlagSet("users "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard) // its errors are returned, and printed once
	status := fs.String("status", "", "only accounts with this `status`: pending, active or disabled")
	q := fs.String("q", "", "only accounts whose address or name contains this `text`, regardless of case")
	asJSON := fs.Bool("json", false, "print JSON")
	name := fs.String("name", "", "the invited person's `name`, shown in the invitation")
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return fmt.Errorf("%w: users %s: %v", errUsage, args[0], err)
	}
	if _, ok := statusWhere[*status]; !ok {
		return fmt.Errorf("%w: -status must be pending, active or disabled, not %q", errUsage, *status)
	}
	wants := map[string]int{"list": 0, "show": 1, "disable": 1, "enable": 1, "delete": 1, "invite": 1, "export": 0, "import": 1}
	if n, ok := wants[args[0]]; !ok || n != len(positional) {
		return usage
	}
	st, err := openStore(cfg.db)
	if err != nil {
		return err
	}
	defer st.close()
	st.composer = cliComposer(cfg)
	now := time.Now().UTC()

	if args[0] == "list" {
		list, err := st.listUsers(ctx, *status, *q)
		if err != nil {
			return err
		}
		if *asJSON {
			return encodeEach(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tEMAIL\tNAME\tCREATED")
		for _, a := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", a.ID, a.Status, a.Email, a.Name, a.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	if args[0] == "export" {
		enc := json.NewEncoder(stdout)
		return st.exportUsers(ctx, func(e exported) error { return enc.Encode(e) })
	}
	if args[0] == "import" {
		list, err := readImport(positional[0], cfg)
		if err != nil {
			return err
		}
		if err := st.importUsers(ctx, list, now); err != nil {
			return fmt.Errorf("%s: %w; nothing imported", positional[0], err)
		}
		fmt.Fprintf(stdout, "imported %d accounts from %s\n", len(list), positional[0])
		return st.accountsChanged()
	}
	if args[0] == "invite" {
		v := validator{}
		validateEmail(v, positional[0])
		if *name != "" {
			validateName(v, *name)
		}
		if len(v) > 0 {
			return fmt.Errorf("%w: %s", errUsage, englishErrors(cfg, v))
		}
		u, err := st.invite(ctx, positional[0], *name, now)
		switch {
		case errors.Is(err, errOverBudget):
			return fmt.Errorf("%s has had its share of emails for now; nothing changed, try again within the hour", positional[0])
		case err != nil:
			return fmt.Errorf("%s: %w", positional[0], err)
		}
		fmt.Fprintf(stdout, "invited %s (account %d): the running service sends the invitation within seconds; its link lets the holder choose a password, and works for %s\n",
			u.Email, u.ID, inviteTTL)
		return st.accountsChanged()
	}

	u, err := st.findUser(ctx, positional[0])
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("no account has the id or address %q", positional[0])
	}
	if err != nil {
		return err
	}
	switch args[0] {
	case "show":
		return showUser(ctx, st, u, *asJSON, stdout, now)
	case "disable":
		err = st.disable(ctx, u, now)
		if err == nil {
			fmt.Fprintf(stdout, "disabled account %d (%s): every session and token of it has ended, and it logs no one in\n", u.ID, u.Email)
		}
	case "enable":
		err = st.enable(ctx, u, now)
		if err == nil {
			fmt.Fprintf(stdout, "enabled account %d (%s): it logs in again\n", u.ID, u.Email)
		}
	case "delete":
		err = st.deleteAccount(ctx, u, u.passwordHash, now)
		if errors.Is(err, errOverBudget) {
			return fmt.Errorf("%s has had its share of emails for now, so the \"account deleted\" email could not be sent; nothing changed: try again within the hour, or disable the account meanwhile", u.Email)
		}
		if err == nil {
			fmt.Fprintf(stdout, "deleted account %d (%s): the running service sends it the \"account deleted\" email\n", u.ID, u.Email)
		}
	}
	if errors.Is(err, errAlready) {
		return fmt.Errorf("account %d (%s) is %s already", u.ID, u.Email, u.status())
	}
	if err != nil {
		return err
	}
	return st.accountsChanged()
}

// shownUser is what `users show -json` prints: no client address, no user
// agent (those are the person's own).
type shownUser struct {
	account
	TwoStep  shownTwoStep   `json:"two_step"`
	Passkeys []shownPasskey `json:"passkeys"`
	Apps     []shownApp     `json:"apps"` // allowed (clients registered with -consent)
	Sessions []shownSession `json:"sessions"`
	Activity []shownEvent   `json:"activity"`
}

type shownApp struct {
	ClientID string    `json:"client_id"`
	Name     string    `json:"name"`
	Since    time.Time `json:"allowed_at"`
}

type shownTwoStep struct {
	On                bool       `json:"on"`
	Since             *time.Time `json:"since,omitempty"`
	RecoveryCodesLeft int        `json:"recovery_codes_left"`
}

type shownPasskey struct {
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used_at,omitempty"`
}

type shownSession struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // browser or api
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used_at"`
}

type shownEvent struct {
	At   time.Time    `json:"at"`
	Kind activityKind `json:"kind"`
}

// showUser prints account u: the account, its live sessions and its recent
// activity.
func showUser(ctx context.Context, st *store, u *user, asJSON bool, stdout io.Writer, now time.Time) error {
	sessions, err := st.sessions(ctx, u.ID, []byte{}, now)
	if err != nil {
		return err
	}
	activity, err := st.activity(ctx, u.ID, maxActivityShown)
	if err != nil {
		return err
	}
	twoStep, err := st.twoStep(ctx, u.ID)
	if err != nil {
		return err
	}
	keys, err := st.passkeys(ctx, u.ID)
	if err != nil {
		return err
	}
	out := shownUser{account: accountOf(u), Sessions: []shownSession{}, Activity: []shownEvent{},
		TwoStep: shownTwoStep{On: twoStep.On, RecoveryCodesLeft: twoStep.CodesLeft}}
	if twoStep.On {
		out.TwoStep.Since = &twoStep.Since
	}
	apps, err := st.allowedApps(ctx, u.ID)
	if err != nil {
		return err
	}
	out.Apps = []shownApp{}
	for _, a := range apps {
		out.Apps = append(out.Apps, shownApp(a))
	}
	out.Passkeys = []shownPasskey{}
	for _, k := range keys {
		p := shownPasskey{Name: k.Name, CreatedAt: k.CreatedAt}
		if !k.LastUsed.IsZero() {
			p.LastUsed = &k.LastUsed
		}
		out.Passkeys = append(out.Passkeys, p)
	}
	for _, s := range sessions {
		kind := "api"
		if s.Browser {
			kind = "browser"
		}
		out.Sessions = append(out.Sessions, shownSession{ID: s.ID, Kind: kind, CreatedAt: s.CreatedAt, LastUsed: s.LastUsed})
	}
	for _, e := range activity {
		out.Activity = append(out.Activity, shownEvent{At: e.At, Kind: e.Kind})
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%d\nemail\t%s\nname\t%s\nstatus\t%s\ncreated\t%s\n", u.ID, u.Email, u.Name, u.status(), u.CreatedAt.Format(time.RFC3339))
	if out.InvitedAt != nil {
		fmt.Fprintf(tw, "invited\t%s\n", out.InvitedAt.Format(time.RFC3339))
	}
	if out.DisabledAt != nil {
		fmt.Fprintf(tw, "disabled\t%s\n", out.DisabledAt.Format(time.RFC3339))
	}
	if twoStep.On {
		fmt.Fprintf(tw, "two-step\ton since %s, %d recovery codes left\n", twoStep.Since.Format(time.RFC3339), twoStep.CodesLeft)
	} else {
		fmt.Fprintf(tw, "two-step\toff\n")
	}
	fmt.Fprintf(tw, "passkeys\t%d\n", len(out.Passkeys))
	for _, k := range out.Passkeys {
		used := "never used"
		if k.LastUsed != nil {
			used = "last used " + k.LastUsed.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\tadded %s, %s\n", k.Name, k.CreatedAt.Format(time.RFC3339), used)
	}
	fmt.Fprintf(tw, "apps allowed\t%d\n", len(out.Apps))
	for _, a := range out.Apps {
		fmt.Fprintf(tw, "  %s\t%s, allowed %s\n", a.Name, a.ClientID, a.Since.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "sessions\t%d\n", len(out.Sessions))
	for _, s := range out.Sessions {
		fmt.Fprintf(tw, "  %s\t%s, since %s, last used %s\n", s.ID, s.Kind, s.CreatedAt.Format(time.RFC3339), s.LastUsed.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "recent activity\t%d\n", len(out.Activity))
	for _, e := range out.Activity {
		fmt.Fprintf(tw, "  %s\t%s\n", e.At.Format(time.RFC3339), e.Kind)
	}
	return tw.Flush()
}

// bcryptHash is a bcrypt hash as the import takes it: $2a$, $2b$ or $2y$,
// a two-digit cost, 53 characters of salt and hash.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// readImport reads the accounts of an import file, one JSON object per
// line (as `users export` writes them; blank lines skipped), and checks
// every one: the first error names its line, and nothing is imported.
func readImport(name string, cfg config) ([]exported, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list []exported
	lineOf := map[string]int{}
	idLine := map[int64]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: %s line %d: %s; nothing imported", errUsage, name, n, fmt.Sprintf(format, args...))
		}
		var e exported
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fail("%v", err)
		}
		if dec.More() {
			return nil, fail("more than one JSON object")
		}
		v := validator{}
		validateEmail(v, e.Email)
		if e.Name != "" {
			validateName(v, e.Name)
		}
		if len(v) > 0 {
			return nil, fail("%s", englishErrors(cfg, v))
		}
		// "" is an account without a password (a passkey's, an
		// invitation's): its owner sets one by a reset, or the link.
		if e.PasswordHash != "" && !bcryptHash.MatchString(e.PasswordHash) {
			return nil, fail("password_hash is not a bcrypt hash ($2a$, $2b$ or $2y$)")
		}
		if _, err := bcrypt.Cost([]byte(e.PasswordHash)); e.PasswordHash != "" && err != nil {
			return nil, fail("password_hash: %v", err)
		}
		if e.Language != "" && !slices.Contains(append(cfg.languages, shippedLanguages...), e.Language) {
			return nil, fail("language %q is not offered", e.Language)
		}
		if e.ID < 0 {
			return nil, fail("id %d is not an account id", e.ID)
		}
		key := strings.ToLower(e.Email)
		if first, ok := lineOf[key]; ok {
			return nil, fail("the address %s is on line %d too", e.Email, first)
		}
		lineOf[key] = n
		if first, ok := idLine[e.ID]; ok && e.ID != 0 {
			return nil, fail("the id %d is on line %d too", e.ID, first)
		}
		idLine[e.ID] = n
		e.line = n
		list = append(list, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w; nothing imported", name, err)
	}
	return list, nil
}

// englishErrors is v's messages in English, for the command line.
func englishErrors(cfg config, v validator) string {
	locales, _, err := loadLocales(cfg.templates)
	var parts []string
	for field, key := range v {
		msg := key
		if err == nil {
			if l, ok := locales["en"]; ok {
				if text, err := l.text(key, nil); err == nil {
					msg = text
				}
			}
		}
		parts = append(parts, field+": "+msg)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// encodeEach writes each of list as a JSON object on a line of its own.
func encodeEach[T any](w io.Writer, list []T) error {
	enc := json.NewEncoder(w)
	for _, e := range list {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// parseInterspersed parses fs's flags wherever they stand among args
// (`users show ada@example.com -json`), and returns the other arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
