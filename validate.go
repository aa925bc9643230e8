package main

// validate.go holds the input rules for names, addresses and passwords.

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
)

// validator collects a message per invalid field.
type validator map[string]string

// check records message for key, unless ok or key already has one.
func (v validator) check(ok bool, key, message string) {
	if _, exists := v[key]; !ok && !exists {
		v[key] = message
	}
}

// validateName applies the input rules for a name (README, "The API"). It is valid UTF-8
// already: readJSON refuses any other body.
func validateName(v validator, name string) {
	v.check(name != "", "name", "must be provided")
	v.check(len(name) <= 500, "name", "must not be more than 500 bytes long")
	v.check(!strings.ContainsFunc(name, func(c rune) bool { return unicode.IsControl(c) || unicode.Is(unicode.Cf, c) }),
		"name", "must not contain control characters or format characters (such as a right-to-left override)")
	lower := strings.ToLower(name)
	v.check(!strings.Contains(lower, "://") && !strings.Contains(lower, "www.") && !slices.ContainsFunc(strings.Fields(name), looksLikeHost),
		"name", "must not contain a web address: it is shown in emails")
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
	v.check(address != "", "email", "must be provided")
	v.check(len(address) <= 254, "email", "must not be more than 254 bytes long")
	v.check(!strings.ContainsFunc(address, func(c rune) bool { return c > unicode.MaxASCII || c <= ' ' || c == 0x7f }),
		"email", "must be a plain ASCII address without spaces or control characters")
	parsed, err := mail.ParseAddress(address)
	v.check(err == nil && parsed.Name == "" && parsed.Address == address && strings.Contains(address, "@"),
		"email", "must be a valid email address, like name@example.com")
	_, domain, _ := strings.Cut(address, "@")
	labels := strings.Split(domain, ".")
	v.check(!strings.HasPrefix(domain, "[") && len(labels) >= 2 && !slices.Contains(labels, ""),
		"email", "must have a domain of two labels or more, like example.com, not an address literal")
}

// validatePassword applies the input rules for a password: 8 to 72
// characters, of any script (hasher.go takes a password over bcrypt's 72
// bytes whole, not cut).
func validatePassword(v validator, password string) {
	n := utf8.RuneCountInString(password)
	v.check(password != "", "password", "must be provided")
	v.check(n >= 8, "password", "must be at least 8 characters long")
	v.check(n <= 72, "password", "must not be more than 72 characters long")
}
