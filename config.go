package main

// config.go holds the configuration: every flag, its SIGNUP_* variable, and the
// checks that flag parsing cannot make, the production guards among them.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// config holds every setting that comes from flags or SIGNUP_* variables.
type config struct {
	host               string
	port               int
	env                string
	db                 string
	baseURL            string
	baseURLDefault     bool // -base-url was not given: it follows the port listened on
	appName            string
	appNameGiven       bool // -app-name (or SIGNUP_APP_NAME) was given, not left at its default
	templates          string
	corsOrigins        []string
	smtpHost           string
	smtpPort           int
	smtpUsername       string
	smtpPassword       string
	smtpSender         string
	smtpHelo           string
	smtpTLS            string
	mailDir            string
	bcryptCost         int
	shutdownTimeout    time.Duration
	mailRetryMin       time.Duration
	mailRetryMax       time.Duration
	claimLease         time.Duration
	checkpointInterval time.Duration
	limiterEnabled     bool
	limiterRPS         float64
	limiterBurst       int
	limiterEmails      int
	trustedProxies     []netip.Prefix
	maxConns           int
	maxConnsPerIP      int
	appURL             string
	returnOrigins      []string // origins return_to may lead to, besides -app-url's and -base-url's
	cookieDomain       string
	sessionLifetime    time.Duration
	webhookURL         string
	webhookSecret      string
	webhookKey         []byte // from webhookSecret
	metricsAllow       []netip.Prefix
	metricsAddr        string
	languages          []string // offered; empty: every one there is
	defaultLanguage    string
	signup             string   // who may sign up: open, invite or closed
	signupDomains      []string // lower-cased domains whose addresses may sign up; empty: any
	activityRetention  time.Duration
	version            bool
}

// parseConfig reads flags from args, with SIGNUP_<NAME> variables from
// getenv as defaults that a flag on the command line overrides. It returns
// the remaining arguments (a subcommand).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, []string, error) {
	var cfg config
	var proxies string
	fs := flag.NewFlagSet("signup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage:
  signup [flags]                                   serve
  signup [flags] backup DEST                       write a consistent copy of the database to DEST
  signup [flags] outbox list [-status S] [-json]   show emails (S: pending, failed or sent)
  signup [flags] outbox retry (ID... | -failed)    compose these emails afresh and send them again
  signup [flags] users list [-status S] [-q TEXT] [-json]   the accounts (S: pending, active or disabled)
  signup [flags] users show ID|EMAIL [-json]       an account, its sessions and recent activity
  signup [flags] users disable|enable|delete ID|EMAIL
  signup [flags] users invite EMAIL [-name NAME]   an invitation whose link lets its holder choose a password
  signup [flags] users export > FILE               every account, one JSON object per line, with its bcrypt hash
  signup [flags] users import FILE                 accounts from such a file: all or none

`)
		fmt.Fprint(stderr, "Every flag can also be set as SIGNUP_<NAME>, e.g. -smtp-password as SIGNUP_SMTP_PASSWORD.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.host, "host", "", "`address` to listen on, e.g. 127.0.0.1 behind a reverse proxy (default: all interfaces)")
	fs.IntVar(&cfg.port, "port", 4000, "HTTP `port`")
	fs.StringVar(&cfg.env, "env", "development", "environment: development or production")
	fs.StringVar(&cfg.db, "db", "signup.db", "SQLite database `file`, or a postgres:// URL for several instances")
	fs.StringVar(&cfg.baseURL, "base-url", "", "public `URL` of this service, used in every link of every email (default http://localhost:<port>; required in production)")
	fs.StringVar(&cfg.appName, "app-name", "Signup", "the product's `name` in emails and pages")
	fs.StringVar(&cfg.templates, "templates", "", "`directory` whose files override the embedded email and page templates of the same name")
	var origins string
	fs.StringVar(&origins, "cors-trusted-origins", "", "space-separated `origins` whose browsers may call the API (CORS, and cross-origin POSTs allowed)")
	fs.StringVar(&cfg.smtpHost, "smtp-host", "", "SMTP server `host`; empty in development = built-in mail capture into -mail-dir")
	fs.IntVar(&cfg.smtpPort, "smtp-port", 587, "SMTP server `port`")
	fs.StringVar(&cfg.smtpUsername, "smtp-username", "", "SMTP AUTH user name")
	fs.StringVar(&cfg.smtpPassword, "smtp-password", "", "SMTP AUTH password (best given as SIGNUP_SMTP_PASSWORD; never logged)")
	fs.StringVar(&cfg.smtpSender, "smtp-sender", "Signup <no-reply@localhost>", "From `address` of the emails")
	fs.StringVar(&cfg.smtpHelo, "smtp-helo", "", "`name` given in EHLO (default: this machine's fully qualified name, else the sender's domain)")
	fs.StringVar(&cfg.smtpTLS, "smtp-tls", "starttls", "SMTP TLS `mode`: starttls (required, verified), tls (implicit) or none")
	fs.StringVar(&cfg.mailDir, "mail-dir", "mail", "`directory` where development mail capture writes .eml files")
	fs.IntVar(&cfg.bcryptCost, "bcrypt-cost", 12, "bcrypt `cost` of password hashes, 4-31")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "deadline for draining requests and background tasks together")
	fs.DurationVar(&cfg.mailRetryMin, "mail-retry-min", 2*time.Second, "shortest wait before retrying an email")
	fs.DurationVar(&cfg.mailRetryMax, "mail-retry-max", 10*time.Minute, "longest wait before retrying an email")
	fs.DurationVar(&cfg.claimLease, "mail-claim-lease", time.Minute, "how long an instance's claim on an email lasts unless renewed: on PostgreSQL, how soon another instance sends the emails of one that died")
	fs.DurationVar(&cfg.checkpointInterval, "checkpoint-interval", time.Minute, "SQLite: how often the WAL is checkpointed and truncated, so that sent tokens leave the files")
	fs.BoolVar(&cfg.limiterEnabled, "limiter-enabled", true, "rate-limit requests per client")
	fs.Float64Var(&cfg.limiterRPS, "limiter-rps", 2, "requests per second allowed per client")
	fs.IntVar(&cfg.limiterBurst, "limiter-burst", 4, "burst of requests allowed per client")
	fs.IntVar(&cfg.limiterEmails, "limiter-emails-per-hour", 30, "most emails one client address may cause in any hour")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated `CIDRs` whose X-Forwarded-For is believed")
	fs.IntVar(&cfg.maxConns, "max-conns", 2048, "most HTTP connections open at once; more are closed at once")
	fs.IntVar(&cfg.maxConnsPerIP, "max-conns-per-client", 64, "most HTTP connections open at once from one client address (an IPv6 /64); a trusted proxy is not limited")
	fs.StringVar(&cfg.appURL, "app-url", "", "`URL` of the app this service signs people up for: \"Continue to <app-name>\" after activation, login and a password change leads there")
	var returnOrigins string
	fs.StringVar(&returnOrigins, "return-origins", "", "further space-separated `origins` that return_to may lead to (-app-url's and -base-url's always may)")
	fs.StringVar(&cfg.cookieDomain, "cookie-domain", "", "`domain` of the session cookie, e.g. example.com so that apps on its subdomains see it (default: this host only)")
	fs.DurationVar(&cfg.sessionLifetime, "session-lifetime", 720*time.Hour, "longest a login in a browser lasts; it also ends after 7 days unused")
	fs.StringVar(&cfg.webhookURL, "webhook-url", "", "the app's `URL` for account events (signed webhooks); https:// in production unless loopback")
	fs.StringVar(&cfg.webhookSecret, "webhook-secret", "", "whsec_ and the base64 of at least 24 random bytes, signing the webhooks (best given as SIGNUP_WEBHOOK_SECRET; never logged)")
	var languages string
	fs.StringVar(&languages, "languages", "", "space-separated `languages` offered (en de fr …; default: every one shipped or added in -templates)")
	fs.StringVar(&cfg.defaultLanguage, "default-language", "en", "the `language` when nothing the person asks for is offered")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "`address` (host:port) of a listener of its own for /metrics, which no proxy routes to; /metrics is then served there only")
	var metricsAllow string
	fs.StringVar(&metricsAllow, "metrics-allow", "", "`CIDRs` (space- or comma-separated) besides loopback whose connections may read /metrics; judged by the connection's own address, never X-Forwarded-For")
	fs.StringVar(&cfg.signup, "signup", "open", "who may sign up: open, invite (only invited addresses) or closed (invitations still work)")
	var signupDomains string
	fs.StringVar(&signupDomains, "signup-domains", "", "space-separated `domains` whose addresses may sign up (default: any)")
	fs.DurationVar(&cfg.activityRetention, "activity-retention", 2160*time.Hour, "how long each account's activity record is kept")
	fs.BoolVar(&cfg.version, "version", false, "print the version and exit")

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SIGNUP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, name, err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintln(stderr, envErr)
		return cfg, nil, fmt.Errorf("%w: %v", errUsage, envErr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, nil, err
		}
		return cfg, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.appNameGiven = getenv("SIGNUP_APP_NAME") != ""
	fs.Visit(func(f *flag.Flag) { cfg.appNameGiven = cfg.appNameGiven || f.Name == "app-name" })
	if cfg.version {
		return cfg, nil, nil // -version prints and exits, whatever else is set
	}
	cfg.corsOrigins = strings.Fields(origins)
	cfg.returnOrigins = strings.Fields(returnOrigins)
	cfg.languages = strings.Fields(languages)
	cfg.signupDomains = strings.Fields(strings.ToLower(signupDomains))
	for _, c := range strings.Fields(strings.ReplaceAll(metricsAllow, ",", " ")) {
		prefix, err := netip.ParsePrefix(c)
		if err != nil {
			addr, aerr := netip.ParseAddr(c)
			if aerr != nil {
				fmt.Fprintf(stderr, "signup: -metrics-allow: %q is not a CIDR or an address\n", c)
				return cfg, nil, fmt.Errorf("%w: -metrics-allow: %q is not a CIDR or an address", errUsage, c)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.metricsAllow = append(cfg.metricsAllow, prefix.Masked())
	}
	if err := cfg.validate(proxies); err != nil {
		fmt.Fprintln(stderr, "signup:", err)
		return cfg, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return cfg, fs.Args(), nil
}

// validate validates the values that flag parsing cannot, including the
// production guards.
func (cfg *config) validate(proxies string) error {
	for p := range strings.SplitSeq(proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("-trusted-proxies: %q is not a CIDR or an address", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.trustedProxies = append(cfg.trustedProxies, prefix.Masked())
	}
	switch {
	case cfg.port < 0 || cfg.port > 65535:
		return fmt.Errorf("-port %d is out of range", cfg.port)
	case cfg.env != "development" && cfg.env != "production":
		return fmt.Errorf("-env must be development or production, not %q", cfg.env)
	case cfg.smtpTLS != "starttls" && cfg.smtpTLS != "tls" && cfg.smtpTLS != "none":
		return fmt.Errorf("-smtp-tls must be starttls, tls or none, not %q", cfg.smtpTLS)
	case cfg.bcryptCost < 4 || cfg.bcryptCost > 31:
		return fmt.Errorf("-bcrypt-cost must be between 4 and 31, not %d", cfg.bcryptCost)
	case cfg.shutdownTimeout <= 0:
		return errors.New("-shutdown-timeout must be positive")
	case cfg.mailRetryMin <= 0 || cfg.mailRetryMax < cfg.mailRetryMin:
		return errors.New("-mail-retry-min must be positive and at most -mail-retry-max")
	case cfg.claimLease < time.Second:
		return errors.New("-mail-claim-lease must be at least 1s")
	case cfg.checkpointInterval <= 0:
		return errors.New("-checkpoint-interval must be positive")
	case cfg.limiterRPS <= 0 || cfg.limiterBurst < 1 || cfg.limiterEmails < 1:
		return errors.New("-limiter-rps, -limiter-burst and -limiter-emails-per-hour must be positive")
	case cfg.maxConns < 1 || cfg.maxConnsPerIP < 1:
		return errors.New("-max-conns and -max-conns-per-client must be positive")
	case cfg.signup != "open" && cfg.signup != "invite" && cfg.signup != "closed":
		return fmt.Errorf("-signup must be open, invite or closed, not %q", cfg.signup)
	case cfg.activityRetention < time.Hour:
		return errors.New("-activity-retention must be at least 1h")
	}
	for _, d := range cfg.signupDomains {
		v := validator{}
		validateEmail(v, "a@"+d)
		if len(v) > 0 || !strings.Contains(d, ".") {
			return fmt.Errorf("-signup-domains: %q is not a domain such as example.com", d)
		}
	}
	sender, err := parseSender(cfg.smtpSender)
	if err != nil {
		return fmt.Errorf("-smtp-sender: %v", err)
	}
	if cfg.smtpHelo == "" {
		cfg.smtpHelo = defaultHelo(sender.Address)
	}
	if cfg.appName == "" || strings.ContainsFunc(cfg.appName, unicode.IsControl) {
		return errors.New("-app-name must be a name without control characters")
	}
	for _, o := range cfg.corsOrigins {
		if !isOrigin(o) {
			return fmt.Errorf("-cors-trusted-origins: %q is not an origin like https://app.example.com", o)
		}
	}
	for i, o := range cfg.returnOrigins {
		if !isOrigin(o) {
			return fmt.Errorf("-return-origins: %q is not an origin like https://app.example.com", o)
		}
		cfg.returnOrigins[i] = strings.ToLower(o)
	}
	if cfg.appURL != "" {
		if u, err := url.Parse(cfg.appURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("-app-url %q must be an http:// or https:// URL such as https://app.example.com", cfg.appURL)
		}
	}
	switch {
	case cfg.webhookURL == "" && cfg.webhookSecret != "":
		return errors.New("-webhook-secret is set but -webhook-url is not: where should the webhooks go?")
	case cfg.webhookURL != "":
		u, err := url.Parse(cfg.webhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-webhook-url %q must be an http:// or https:// URL such as https://app.example.com/hooks/signup", cfg.webhookURL)
		}
		if cfg.webhookSecret == "" {
			return errors.New("-webhook-url needs -webhook-secret (best as SIGNUP_WEBHOOK_SECRET): whsec_ and the base64 of at least 24 random bytes, e.g. whsec_$(head -c 32 /dev/urandom | base64)")
		}
		if cfg.webhookKey, err = parseWebhookSecret(cfg.webhookSecret); err != nil {
			return fmt.Errorf("-webhook-secret: %v", err)
		}
		if cfg.env == "production" && u.Scheme != "https" && !isLoopback(u.Hostname()) {
			return fmt.Errorf("production needs an https:// -webhook-url (got %s) unless it is loopback: the webhooks carry names and addresses", u.Redacted())
		}
	}
	if cfg.sessionLifetime < time.Minute {
		return errors.New("-session-lifetime must be at least 1m")
	}
	if d := cfg.cookieDomain; d != "" && (strings.ContainsAny(d, ":/ ;,") || !strings.Contains(strings.Trim(d, "."), ".")) {
		return fmt.Errorf("-cookie-domain %q must be a domain such as example.com", d)
	}
	baseSet := cfg.baseURL != ""
	cfg.baseURLDefault = !baseSet
	if !baseSet {
		cfg.baseURL = "http://localhost:" + strconv.Itoa(cfg.port)
	}
	base, err := url.Parse(cfg.baseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return fmt.Errorf("-base-url %q must be an http:// or https:// URL such as https://signup.example.com", cfg.baseURL)
	}
	cfg.baseURL = strings.TrimSuffix(cfg.baseURL, "/")
	if strings.ContainsFunc(cfg.smtpHelo, func(c rune) bool { return c <= ' ' || c > unicode.MaxASCII }) {
		return fmt.Errorf("-smtp-helo %q must be a host name", cfg.smtpHelo)
	}
	if cfg.env != "production" {
		return nil
	}
	switch {
	case !baseSet:
		return errors.New("production needs -base-url, the public URL of this service: every email links to it")
	case base.Scheme != "https" && !isLoopback(base.Hostname()):
		return fmt.Errorf("production needs an https:// -base-url (got %s): links in emails carry tokens, which must not cross the network in clear", cfg.baseURL)
	case cfg.smtpHost == "":
		return errors.New("production needs -smtp-host: there is no mail capture in production, and signups would never get their email")
	case cfg.smtpTLS == "none" && !isLoopback(cfg.smtpHost):
		return fmt.Errorf("production refuses -smtp-tls none to %s: the password and every activation token would cross the network in clear; use starttls or tls", cfg.smtpHost)
	case cfg.bcryptCost < 10:
		return fmt.Errorf("production needs -bcrypt-cost of at least 10 (got %d): lower costs make stolen password hashes cheap to crack", cfg.bcryptCost)
	case !strings.Contains(sender.Address[strings.LastIndex(sender.Address, "@")+1:], "."):
		return fmt.Errorf("production needs -smtp-sender with a fully qualified domain (got %s): relays refuse such a sender (504 5.5.2 need fully-qualified address)", sender.Address)
	}
	return nil
}

// isOrigin reports whether o is an origin: scheme, host and port, nothing else.
func isOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == "" && u.User == nil && u.RawQuery == "" && u.Fragment == ""
}

// defaultHelo is the name to give in EHLO: this machine's name if it is fully
// qualified (relays may refuse one that is not), else the sender's domain.
func defaultHelo(sender string) string {
	if name, err := os.Hostname(); err == nil && strings.Contains(name, ".") {
		return name
	}
	_, domain, _ := strings.Cut(sender, "@")
	return domain
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
