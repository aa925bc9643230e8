package main

// validate.go holds the input rules for names, addresses and passwords.

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
)

// validator collects a message per invalid field: the key of a message
// (error.required, …), written in the request's language when it is
// answered (failedValidation, render).
type validator map[string]string

// check records message for key, unless ok or key already has one.
func (v validator) check(ok bool, key, message string) {
	if _, exists := v[key]; !ok && !exists {
		v[key] = message
	}
}

// validateName applies the input rules for a name (docs/api.md): valid
// UTF-8 (a form's body may be anything), no control, format, line or
// paragraph separator characters, no web address.
func validateName(v validator, name string) {
	v.check(name != "", "name", "error.required")
	v.check(len(name) <= 500, "name", "error.name_too_long")
	v.check(utf8.ValidString(name) && !strings.ContainsFunc(name, func(c rune) bool {
		return unicode.IsControl(c) || unicode.In(c, unicode.Cf, unicode.Zl, unicode.Zp)
	}), "name", "error.name_control")
	lower := strings.ToLower(name)
	v.check(!strings.Contains(lower, "://") && !strings.Contains(lower, "www.") && !slices.ContainsFunc(strings.Fields(name), looksLikeHost),
		"name", "error.name_web_address")
}

// looksLikeHost reports whether word is a dotted host name such as
// example.com: labels joined by dots, the last of two letters or more.
func looksLikeHost(word string) bool {
	labels := strings.Split(strings.Trim(word, ".,;:!?()[]{}<>\"'"), ".")
	if len(labels) < 2 || slices.Contains(labels, "") {
		return false
	}
	tld := labels[len(labels)-1]
	return len(tld) >= 2 && !strings.ContainsFunc(tld, func(c rune) bool { return !unicode.IsLetter(c) })
}

// validateEmail applies the input rules for an address: one plain
// local@domain, in ASCII, with no display name, comment or line break.
func validateEmail(v validator, address string) {
	v.check(address != "", "email", "error.required")
	v.check(len(address) <= 254, "email", "error.email_too_long")
	v.check(!strings.ContainsFunc(address, func(c rune) bool { return c > unicode.MaxASCII || c <= ' ' || c == 0x7f }),
		"email", "error.email_ascii")
	parsed, err := mail.ParseAddress(address)
	v.check(err == nil && parsed.Name == "" && parsed.Address == address && strings.Contains(address, "@"),
		"email", "error.email_invalid")
	_, domain, _ := strings.Cut(address, "@")
	labels := strings.Split(domain, ".")
	// A top-level domain is never all digits: 127.0.0.1 is an address, not
	// a domain.
	v.check(!strings.HasPrefix(domain, "[") && len(labels) >= 2 && !slices.Contains(labels, "") &&
		strings.ContainsFunc(labels[len(labels)-1], func(c rune) bool { return c < '0' || c > '9' }),
		"email", "error.email_domain")
}

// validatePassword applies the input rules for a password: 8 to 72
// characters, of any script (hasher.go takes a password over bcrypt's 72
// bytes whole, not cut).
func validatePassword(v validator, password string) {
	n := utf8.RuneCountInString(password)
	v.check(password != "", "password", "error.required")
	v.check(n >= 8, "password", "error.password_short")
	v.check(n <= 72, "password", "error.password_long")
}
