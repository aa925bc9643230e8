package main

// cmd_clients.go is `signup clients`: the apps that sign people in through
// OpenID Connect (oidc.go) — add, list, remove, rotate-secret — beside the
// serving process or without one, on SQLite and PostgreSQL.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// clientsUsage is how `signup clients` is called.
const clientsUsage = `clients add NAME -redirect-uri URI [-redirect-uri URI…] [-post-logout-redirect-uri URI…] [-public] [-consent] [-json] |
  clients list [-json] | clients remove ID | clients rotate-secret ID [-json]`

// uriList is a flag given once per URI.
type uriList []string

func (l *uriList) String() string     { return strings.Join(*l, " ") }
func (l *uriList) Set(v string) error { *l = append(*l, v); return nil }

// addedClient is what `clients add` and `rotate-secret` print: the secret
// this once, never again.
type addedClient struct {
	*oidcClient
	Secret string `json:"client_secret,omitempty"`
}

// cmdClients runs `signup clients …` with the database of cfg.
func cmdClients(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	err := clients(ctx, cfg, args, stdout)
	if errors.Is(err, errUsage) {
		fmt.Fprintln(stderr, "signup:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	return err
}

func clients(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	usage := fmt.Errorf("%w: %s", errUsage, clientsUsage)
	if len(args) == 0 {
		return usage
	}
	fs := flag.NewFlagSet("clients "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var redirects, logouts uriList
	fs.Var(&redirects, "redirect-uri", "a `URI` the app's logins may return to (exactly); once per URI")
	fs.Var(&logouts, "post-logout-redirect-uri", "a `URI` the app's logouts may return to; once per URI")
	public := fs.Bool("public", false, "a public client (no secret: a single-page or native app), which must use PKCE")
	consent := fs.Bool("consent", false, "ask each person once before the app learns who they are (another party's app)")
	asJSON := fs.Bool("json", false, "print JSON")
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return fmt.Errorf("%w: clients %s: %v", errUsage, args[0], err)
	}
	want := map[string]int{"add": 1, "list": 0, "remove": 1, "rotate-secret": 1}
	if n, ok := want[args[0]]; !ok || len(positional) != n {
		return usage
	}
	if args[0] == "add" {
		if len(redirects) == 0 {
			return fmt.Errorf("%w: clients add: at least one -redirect-uri", errUsage)
		}
		for _, uri := range append(append([]string{}, redirects...), logouts...) {
			if err := checkRedirectURI(uri, cfg.env == "development"); err != nil {
				return fmt.Errorf("%w: clients add: %v", errUsage, err)
			}
		}
	}
	st, err := openStore(cfg.db)
	if err != nil {
		return err
	}
	defer st.close()

	switch args[0] {
	case "add":
		c := &oidcClient{ID: newClientID(), Name: positional[0], RedirectURIs: redirects, LogoutURIs: append([]string{}, logouts...),
			Public: *public, Consent: *consent, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		out := addedClient{oidcClient: c}
		var hash []byte
		if !c.Public {
			out.Secret = newClientID() + newClientID() // 256 bits
			hash = hashSecret(out.Secret)
		}
		if err := st.addClient(ctx, c, hash); err != nil {
			return err
		}
		return printClient(stdout, out, *asJSON, cfg.baseURL)
	case "list":
		list, err := st.clients(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return encodeEach(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT ID\tNAME\tTYPE\tCONSENT\tREDIRECT URIS")
		for _, c := range list {
			kind := "confidential"
			if c.Public {
				kind = "public"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", c.ID, c.Name, kind, c.Consent, strings.Join(c.RedirectURIs, " "))
		}
		return tw.Flush()
	case "remove":
		err := st.removeClient(ctx, positional[0])
		if errors.Is(err, errNotFound) {
			return fmt.Errorf("no client has the id %q", positional[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed client %s: its tokens have ended\n", positional[0])
		return st.accountsChanged() // the serving process forgets the tokens it cached (SQLite)
	default: // rotate-secret
		secret := newClientID() + newClientID()
		err := st.setClientSecret(ctx, positional[0], hashSecret(secret))
		if errors.Is(err, errNotFound) {
			return fmt.Errorf("no confidential client has the id %q", positional[0])
		}
		if err != nil {
			return err
		}
		c, err := st.client(ctx, positional[0])
		if err != nil {
			return err
		}
		return printClient(stdout, addedClient{c, secret}, *asJSON, cfg.baseURL)
	}
}

// printClient prints a client just added, or its new secret, with what
// the app is configured with.
func printClient(w io.Writer, c addedClient, asJSON bool, issuer string) error {
	if asJSON {
		return encodeEach(w, []addedClient{c})
	}
	fmt.Fprintf(w, "issuer:        %s\nclient_id:     %s\n", strings.TrimSuffix(issuer, "/"), c.ID)
	if c.Secret != "" {
		fmt.Fprintf(w, "client_secret: %s   (shown this once: keep it now)\n", c.Secret)
	}
	fmt.Fprintf(w, "redirect URIs: %s\nscopes:        openid email profile (offline_access for refresh tokens)\n", strings.Join(c.RedirectURIs, " "))
	return nil
}

// checkRedirectURI checks a redirect URI given to `clients add`: absolute,
// no fragment, https — or http for a loopback host (or any, in
// development).
func checkRedirectURI(uri string, development bool) error {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is no absolute URI without a fragment", uri)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); development || host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%q: http:// only for a loopback host (or with -env development)", uri)
	}
	return fmt.Errorf("%q: https:// (or http:// for a loopback host)", uri)
}
