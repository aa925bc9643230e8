package main

// outbox.go is what goes out: the outbox row, every kind of email and
// webhook event (listed once, here), and the composer that writes a
// change's rows. The store queues them in the change's transaction
// (store_outbox.go); the outbox's deliverers send them (delivery.go).

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// outboxRow is one row of the outbox: a composed email or webhook, and its
// delivery state.
type outboxRow struct {
	ID        int64
	Kind      string // an emailKind, or an eventType for a webhook
	Channel   string // channelEmail (to Recipient, over SMTP) or channelWebhook (a POST to -webhook-url)
	UserID    int64  // 0 for a row that outlives its account (account-deleted, every webhook)
	CreatedAt time.Time
	MessageID string
	Recipient string
	Message   []byte
	Attempts  int

	token     *linkToken // the token its link carries, stored with it; nil for none
	allowance allowance  // the send budget an email spends (store_limits.go)
	stale     error      // the stored message cannot be sent as it is (errUnsealable, errNoMessage): compose it afresh
}

// The outbox's channels: each has a deliverer of its own.
const (
	channelEmail   = "email"
	channelWebhook = "webhook"
)

// linkToken is the token an email's link carries, as the store keeps it:
// its hash, its scope and when it expires.
type linkToken struct {
	hash   []byte
	scope  string
	expiry time.Time
}

// emailKind names a kind of email.
type emailKind string

// The kinds of email.
const (
	kindWelcome         emailKind = "welcome"
	kindActivation      emailKind = "activation"
	kindAccountExists   emailKind = "account-exists"
	kindPasswordReset   emailKind = "password-reset"
	kindPasswordChanged emailKind = "password-changed"  // from the account page, the API or a reset
	kindConfirmOld      emailKind = "confirm-email-old" // an address change: the link to the current address
	kindConfirmNew      emailKind = "confirm-email-new" // and the link to the new one
	kindEmailChanged    emailKind = "email-changed"     // the change taking effect, to the old address
	kindAccountDeleted  emailKind = "account-deleted"   // sent after the account is gone: its row has no user
	kindInvitation      emailKind = "invitation"        // `signup users invite`: its holder chooses a password
	kindTwoStepOn       emailKind = "two-step-on"       // two-step verification turned on
	kindTwoStepOff      emailKind = "two-step-off"      // and off
	kindRecoveryUsed    emailKind = "recovery-code-used"
	kindPasskeyAdded    emailKind = "passkey-added"
	kindPasskeyRemoved  emailKind = "passkey-removed"
)

// How long tokens live.
const (
	activationTTL = 72 * time.Hour     // the link in a welcome or activation email
	resetTTL      = 45 * time.Minute   // the link in a password-reset email
	changeTTL     = 24 * time.Hour     // the links that confirm an address change
	undoTTL       = 7 * 24 * time.Hour // the link that gives an account its old address back
	authTTL       = 24 * time.Hour     // a bearer token from logging in
	inviteTTL     = 7 * 24 * time.Hour // the link in an invitation
)

// emailSpec is what one kind of email is. Every kind counts against one
// allowance of the recipient's send budget (store.queue).
type emailSpec struct {
	template  string        // its file in templates/ (or -templates)
	scope     string        // the scope of the token its link carries; "" for none
	ttl       time.Duration // how long that token lives
	path      string        // where its link leads, on -base-url; ?token= is added where it carries one
	allowance allowance     // the budget it spends: a password reset's emails spend allowanceReset whatever their kind
}

// emailKinds lists every kind of email the outbox knows: adding a kind is
// a constant above, an entry here and its template.
var emailKinds = map[emailKind]emailSpec{
	kindWelcome:         {"welcome.tmpl", "activation", activationTTL, "/activate", allowanceStranger},
	kindActivation:      {"activation.tmpl", "activation", activationTTL, "/activate", allowanceStranger},
	kindAccountExists:   {"account-exists.tmpl", "", 0, "/forgot-password", allowanceStranger},
	kindPasswordReset:   {"password-reset.tmpl", "password-reset", resetTTL, "/reset-password", allowanceReset},
	kindPasswordChanged: {"password-changed.tmpl", "", 0, "/forgot-password", allowanceOwner},
	kindConfirmOld:      {"confirm-email.tmpl", "email-change-old", changeTTL, "/confirm-email", allowanceOwner},
	kindConfirmNew:      {"confirm-email.tmpl", "email-change-new", changeTTL, "/confirm-email", allowanceStranger},
	kindEmailChanged:    {"email-changed.tmpl", "email-undo", undoTTL, "/undo-email", allowanceOwner},
	kindAccountDeleted:  {"account-deleted.tmpl", "", 0, "", allowanceOwner},
	kindInvitation:      {"invitation.tmpl", "activation", inviteTTL, "/activate", allowanceStranger},
	kindTwoStepOn:       {"two-step-on.tmpl", "", 0, "/forgot-password", allowanceOwner},
	kindTwoStepOff:      {"two-step-off.tmpl", "", 0, "/forgot-password", allowanceOwner},
	kindRecoveryUsed:    {"recovery-code-used.tmpl", "", 0, "/forgot-password", allowanceOwner},
	kindPasskeyAdded:    {"passkey-added.tmpl", "", 0, "/forgot-password", allowanceOwner},
	kindPasskeyRemoved:  {"passkey-removed.tmpl", "", 0, "/forgot-password", allowanceOwner},
}

// metricKind is the kind label /metrics counts an outbox row of kind by:
// the kind itself, but "unsolicited" for every kind of email a stranger can
// cause (welcome and account exists, a reset's password-reset and
// activation, either confirmation to someone else's new address), so that
// no count tells whether an address has an account. An invitation, which
// only the operator causes, is counted as itself.
func metricKind(kind string) string {
	if spec, ok := emailKinds[emailKind(kind)]; ok && spec.allowance != allowanceOwner && kind != string(kindInvitation) {
		return "unsolicited"
	}
	return kind
}

// eventType names a webhook event: one per account change.
type eventType string

// The webhook events.
const (
	eventCreated         eventType = "user.created" // a new account, pending
	eventActivated       eventType = "user.activated"
	eventEmailChanged    eventType = "user.email_changed"
	eventPasswordChanged eventType = "user.password_changed"
	eventDeleted         eventType = "user.deleted"  // by "This wasn't me", by its owner or by the operator
	eventDisabled        eventType = "user.disabled" // by the operator
	eventEnabled         eventType = "user.enabled"
	eventInvited         eventType = "user.invited" // a new account, pending, or a pending one, invited by the operator
	eventTwoStepOn       eventType = "user.two_step_enabled"
	eventTwoStepOff      eventType = "user.two_step_disabled"
	eventRecoveryUsed    eventType = "user.recovery_code_used"
	eventPasskeyAdded    eventType = "user.passkey_added"
	eventPasskeyRemoved  eventType = "user.passkey_removed"
)

// eventTypes lists every webhook event, in the order the metrics show them.
var eventTypes = []eventType{eventCreated, eventActivated, eventEmailChanged, eventPasswordChanged, eventDeleted, eventDisabled, eventEnabled, eventInvited,
	eventTwoStepOn, eventTwoStepOff, eventRecoveryUsed, eventPasskeyAdded, eventPasskeyRemoved}

// webhookEvent is a webhook's body: never a hash or a token.
type webhookEvent struct {
	Type      eventType   `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      webhookUser `json:"data"`
}

// webhookUser is the account a webhook event is about.
type webhookUser struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Activated bool      `json:"activated"`
}

// composer writes the outbox rows of a change: each email from its
// kind's template in the language of the account it is about, and each
// webhook event. The store is given one (store.composer) and calls it in
// the change's transaction; nothing else in the store knows of templates
// or URLs.
type composer struct {
	templates  *templates
	sender     *mail.Address // From of every email
	baseURL    string        // of every link
	appName    string
	webhookURL string // where events go; "" composes none
}

// newComposer is the composer of cfg's emails and events, from t.
func newComposer(cfg config, t *templates) *composer {
	from, _ := parseSender(cfg.smtpSender) // checked with the config
	return &composer{templates: t, sender: from, baseURL: cfg.baseURL, appName: cfg.appName, webhookURL: cfg.webhookURL}
}

// cliComposer is the composer of a subcommand run with cfg: it tells the
// webhook events of -webhook-url, and leaves its emails for the serving
// process to compose (email).
func cliComposer(cfg config) *composer {
	return &composer{webhookURL: cfg.webhookURL}
}

// email writes the email of kind to u, dated now, in u's language, its
// link carrying token where kind carries one. Only the address (validated)
// and the fixed subject go into headers; the user's name appears in the
// bodies alone.
//
// A subcommand's composer has no templates (cliComposer): its emails are
// queued uncomposed, for the serving process to compose with its own base
// URL, app name and templates, and a new token where kind carries one
// (deliverer.composeAfresh).
func (c *composer) email(kind emailKind, u *user, token string, now time.Time) (*outboxRow, error) {
	now = now.UTC()
	if c.templates == nil {
		return &outboxRow{Kind: string(kind), Channel: channelEmail, UserID: u.ID, Recipient: u.Email, CreatedAt: now, allowance: emailKinds[kind].allowance}, nil
	}
	l := c.templates.localeOf(u)
	t, ok := c.templates.emails[l.tag][kind]
	if !ok {
		return nil, fmt.Errorf("no email of kind %q", kind)
	}
	k := emailKinds[kind]
	data := mailData{AppName: c.appName, locale: l, Name: u.Name, Link: c.baseURL + k.path, OldEmail: u.oldEmail, NewEmail: u.newEmail}
	if k.path == "" {
		data.Link = ""
	}
	if k.scope != "" {
		data.Link += "?token=" + token
		data.Expires = l.formatTime(now.Add(k.ttl))
	}
	if kind == kindWelcome && u.returnTo != "" { // the page asked for before signing up, on after activation
		data.Link += "&return_to=" + url.QueryEscape(u.returnTo)
	}
	e, err := composeEmail(t, data, c.sender, u.Email, now)
	if err != nil {
		return nil, err
	}
	e.Kind, e.UserID, e.allowance = string(kind), u.ID, k.allowance
	if k.scope != "" {
		e.token = &linkToken{hash: hashToken(token), scope: k.scope, expiry: now.Add(k.ttl)}
	}
	return e, nil
}

// event writes the webhook event typ about u at now; nil without
// -webhook-url. Its row has no user, so it outlives the account, and it
// spends no send budget.
func (c *composer) event(typ eventType, u *user, now time.Time) (*outboxRow, error) {
	if c.webhookURL == "" {
		return nil, nil
	}
	body, err := json.Marshal(webhookEvent{Type: typ, Timestamp: now.UTC().Truncate(time.Millisecond),
		Data: webhookUser{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: u.CreatedAt.UTC(), Activated: u.Activated}})
	if err != nil {
		return nil, err
	}
	b := make([]byte, 15)
	rand.Read(b)
	return &outboxRow{Kind: string(typ), Channel: channelWebhook, CreatedAt: now, Recipient: c.webhookURL, Message: body,
		MessageID: "msg_" + strings.ToLower(base32.StdEncoding.EncodeToString(b))}, nil
}
