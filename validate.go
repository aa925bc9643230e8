package main

// validate.go holds the input rules for names, addresses and passwords.

import (
	"strings"
	"unicode"

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
	v.check(!strings.ContainsFunc(name, unicode.IsControl), "name", "must not contain control characters")
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
}

// validatePassword applies the input rules for a password.
func validatePassword(v validator, password string) {
	v.check(password != "", "password", "must be provided")
	v.check(len(password) >= 8, "password", "must be at least 8 bytes long")
	v.check(len(password) <= 72, "password", "must not be more than 72 bytes long")
}
