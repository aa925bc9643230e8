package main

// users_policy.go is who may sign up: -signup open|invite|closed and
// -signup-domains, on the API and the pages alike (app.signup asks). An
// invitation (`signup users invite`, store_operator.go) works under
// every policy.

import (
	"errors"
	"slices"
	"strings"
)

// errSignupClosed answers a signup under -signup closed; errNotInvited
// a signup of an address not invited under -signup invite, answered as
// every other signup is (handleSignup, handleSignupForm).
var (
	errSignupClosed = errors.New("signup is closed: ask the operator for an invitation")
	errNotInvited   = errors.New("not invited")
)

// checkSignupDomain adds to v that address is not at one of
// -signup-domains, if it is not: a rule about the address, never about an
// account.
func (app *application) checkSignupDomain(v validator, address string) {
	if len(app.cfg.signupDomains) == 0 || v["email"] != "" {
		return
	}
	_, domain, _ := strings.Cut(address, "@")
	v.check(slices.Contains(app.cfg.signupDomains, strings.ToLower(domain)), "email", "error.signup_domain")
}

// signupPage is p, the signup form, saying who may sign up under
// -signup invite and -signup-domains.
func (app *application) signupPage(p page) page {
	p.Args = map[string]string{"Domains": strings.Join(app.cfg.signupDomains, ", ")}
	if app.cfg.signup == "invite" {
		p.Lines = append(p.Lines, "signup.invite_only")
	}
	if len(app.cfg.signupDomains) > 0 {
		p.Lines = append(p.Lines, "signup.domains_only")
	}
	return p
}
