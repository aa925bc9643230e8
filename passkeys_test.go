package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
)

// softAuthenticator is a passkey held in the test: an ECDSA P-256 key
// that signs assertions as an authenticator does (user present and
// verified), for the tests and benchmarks that need no browser.
type softAuthenticator struct {
	key    *ecdsa.PrivateKey
	id     []byte // the credential's id
	handle []byte // its account's user handle
	count  uint32
}

func newSoftAuthenticator(t testing.TB, accountID int64) *softAuthenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	cryptorand.Read(id)
	return &softAuthenticator{key: key, id: id, handle: passkeyHandle(accountID)}
}

// credential is the passkey as the server keeps it once registered.
func (a *softAuthenticator) credential(t testing.TB) *webauthn.Credential {
	t.Helper()
	pub, _ := a.key.PublicKey.Bytes() // 0x04 || X || Y
	cose, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: 2, Algorithm: -7},
		Curve: 1, XCoord: pub[1:33], YCoord: pub[33:]})
	if err != nil {
		t.Fatal(err)
	}
	return &webauthn.Credential{ID: a.id, PublicKey: cose, Flags: webauthn.CredentialFlags{UserPresent: true, UserVerified: true}}
}

// create makes the passkey for challenge and the user handle of the
// ceremony's options, as a browser's navigator.credentials.create answers
// with no attestation: the registration's JSON.
func (a *softAuthenticator) create(t testing.TB, challenge, handle []byte, baseURL string) json.RawMessage {
	t.Helper()
	a.handle = handle
	base, _ := url.Parse(baseURL)
	b64 := base64.RawURLEncoding.EncodeToString
	clientData, _ := json.Marshal(map[string]any{"type": "webauthn.create", "challenge": b64(challenge), "origin": base.Scheme + "://" + base.Host, "crossOrigin": false})
	rpHash := sha256.Sum256([]byte(base.Hostname()))
	authData := append(rpHash[:], 0x45, 0, 0, 0, 0)  // user present and verified, attested credential data
	authData = append(authData, make([]byte, 16)...) // no AAGUID
	authData = append(authData, byte(len(a.id)>>8), byte(len(a.id)))
	authData = append(append(authData, a.id...), a.credential(t).PublicKey...)
	attestation, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(clientData), "attestationObject": b64(attestation), "transports": []string{"internal"}}})
	return out
}

// passkey is the passkey as the account page adds it, named name.
func (a *softAuthenticator) passkey(t testing.TB, name string) *newPasskey {
	return &newPasskey{name: name, cred: a.credential(t), handle: a.handle}
}

// assert signs challenge for the site baseURL: the assertion's JSON, as a
// browser's credential.toJSON() writes it.
func (a *softAuthenticator) assert(t testing.TB, challenge []byte, baseURL string) json.RawMessage {
	t.Helper()
	base, _ := url.Parse(baseURL)
	b64 := base64.RawURLEncoding.EncodeToString
	clientData, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": b64(challenge), "origin": base.Scheme + "://" + base.Host, "crossOrigin": false})
	rpHash := sha256.Sum256([]byte(base.Hostname()))
	a.count++
	authData := append(rpHash[:], 0x05, byte(a.count>>24), byte(a.count>>16), byte(a.count>>8), byte(a.count)) // user present and verified
	digest := sha256.Sum256(clientData)
	signed := sha256.Sum256(append(append([]byte{}, authData...), digest[:]...))
	sig, err := ecdsa.SignASN1(cryptorand.Reader, a.key, signed[:])
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64(clientData), "authenticatorData": b64(authData), "signature": b64(sig), "userHandle": b64(a.handle)}})
	return out
}

// passkeyBegin asks base for a passkey login's ceremony and challenge.
func passkeyBegin(t *testing.T, base string) (ceremony string, challenge []byte) {
	t.Helper()
	status, body := post(t, "POST", base+"/login/passkey", map[string]string{})
	options, _ := body["options"].(map[string]any)
	pk, _ := options["publicKey"].(map[string]any)
	c, _ := pk["challenge"].(string)
	challenge, err := base64.RawURLEncoding.DecodeString(c)
	if status != 200 || err != nil || body["ceremony"] == nil {
		t.Fatalf("begin a passkey login: %d %v", status, body)
	}
	return body["ceremony"].(string), challenge
}

// TestPasskeyAcrossInstances: two instances sharing PostgreSQL (and one on
// SQLite) share passkeys and ceremonies: a login begun at one is finished
// at the other, with a session that works at both; the same assertion
// again, a disabled account's passkey and a removed one log no one in.
func TestPasskeyAcrossInstances(t *testing.T) {
	t.Parallel()
	for engine, database := range engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			db := database(t)
			srv := startSMTP(t, nil)
			const site = "http://localhost:8443" // both instances' -base-url: the relying party
			args := append(baseArgs(t.TempDir()), smtpArgs(srv.host, srv.port)...)
			args = append(args, "-db", db, "-base-url", site)
			a, b := startInstances(t, engine, args)
			signup(t, a.url, "ada@example.com")
			activate(t, a.url, waitFor1(t, srv, "ada@example.com", "Activate"))
			st, err := openStore(db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			st.composer = cliComposer(config{})
			u, err := userByAddress(context.Background(), st.read, "ada@example.com")
			if err != nil {
				t.Fatal(err)
			}
			auth := newSoftAuthenticator(t, u.ID)
			if err := st.addPasskey(context.Background(), u, auth.passkey(t, "Phone"), time.Now()); err != nil {
				t.Fatal(err)
			}

			finish := func(base, ceremony string, assertion json.RawMessage) (int, *http.Response) {
				t.Helper()
				raw, _ := json.Marshal(passkeyFinish{Ceremony: ceremony, Credential: assertion, ReturnTo: "/account"})
				res, err := http.Post(base+"/login/passkey/finish", "application/json", strings.NewReader(string(raw)))
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode, res
			}
			ceremony, challenge := passkeyBegin(t, a.url)
			assertion := auth.assert(t, challenge, site)
			status, res := finish(b.url, ceremony, assertion)
			var session *http.Cookie
			for _, c := range res.Cookies() {
				if c.Name == "signup_session" {
					session = c
				}
			}
			if status != 200 || session == nil {
				t.Fatalf("a passkey login begun at one instance, finished at the other: %d, session %v", status, session)
			}
			for _, instance := range []*process{a, b} {
				req, _ := http.NewRequest("GET", instance.url+"/v1/forward-auth", nil)
				req.AddCookie(session)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != 200 || res.Header.Get("Remote-Email") != "ada@example.com" {
					t.Errorf("forward auth with the passkey's session: %d %q", res.StatusCode, res.Header.Get("Remote-Email"))
				}
			}
			if status, _ := finish(a.url, ceremony, assertion); status != 401 {
				t.Errorf("the same ceremony and assertion again: %d, want 401", status)
			}

			mustUsers(t, db, nil, "disable", "ada@example.com")
			ceremony, challenge = passkeyBegin(t, b.url)
			if status, _ := finish(a.url, ceremony, auth.assert(t, challenge, site)); status != 401 {
				t.Errorf("a disabled account's passkey: %d, want 401", status)
			}
			mustUsers(t, db, nil, "enable", "ada@example.com")
			ceremony, challenge = passkeyBegin(t, b.url)
			if status, _ := finish(a.url, ceremony, auth.assert(t, challenge, site)); status != 200 {
				t.Errorf("enabled again: %d, want 200", status)
			}
			var shown shownUser
			if err := json.Unmarshal([]byte(mustUsers(t, db, nil, "show", "ada@example.com", "-json")), &shown); err != nil ||
				len(shown.Passkeys) != 1 || shown.Passkeys[0].Name != "Phone" || shown.Passkeys[0].LastUsed == nil {
				t.Errorf("users show: passkeys %+v (%v)", shown.Passkeys, err)
			}
			if err := st.removePasskey(context.Background(), u, auth.id, time.Now()); err != nil {
				t.Fatal(err)
			}
			ceremony, challenge = passkeyBegin(t, a.url)
			if status, _ := finish(b.url, ceremony, auth.assert(t, challenge, site)); status != 401 {
				t.Errorf("a removed passkey: %d, want 401", status)
			}
		})
	}
}
