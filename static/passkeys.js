// passkeys.js: the browser's half of passkeys (WebAuthn), the one script
// signup serves. It adds to the pages, never replaces them: every password
// path works without it. On the login page: "Log in with a passkey" and
// the browser's passkey autofill on the email field; on the account page:
// "Add a passkey" and "Confirm with a passkey"; on the signup page "Sign
// up with a passkey"; on the activation page the signup's passkey or a
// new one. The server's half is passkeys.go and passkeys_signup.go.
(function () {
	"use strict";
	if (!window.PublicKeyCredential || !navigator.credentials) {
		return;
	}

	// WebAuthn's binary fields travel as base64url in JSON.
	function bytes(s) {
		s = s.replace(/-/g, "+").replace(/_/g, "/");
		while (s.length % 4) {
			s += "=";
		}
		return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
	}
	function text(buf) {
		var s = "";
		new Uint8Array(buf).forEach(function (b) { s += String.fromCharCode(b); });
		return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
	}
	function descriptors(list) {
		return (list || []).map(function (d) { return Object.assign({}, d, {id: bytes(d.id)}); });
	}
	function credentialJSON(c) {
		var r = c.response, out = {id: c.id, rawId: text(c.rawId), type: c.type,
			authenticatorAttachment: c.authenticatorAttachment || undefined,
			clientExtensionResults: c.getClientExtensionResults(), response: {clientDataJSON: text(r.clientDataJSON)}};
		if (r.attestationObject) {
			out.response.attestationObject = text(r.attestationObject);
			out.response.transports = r.getTransports ? r.getTransports() : [];
		} else {
			out.response.authenticatorData = text(r.authenticatorData);
			out.response.signature = text(r.signature);
			out.response.userHandle = r.userHandle ? text(r.userHandle) : undefined;
		}
		return out;
	}
	function post(path, body, form) {
		return fetch(path, {method: "POST", credentials: "same-origin",
			headers: {"Content-Type": form ? "application/x-www-form-urlencoded" : "application/json"},
			body: form ? new URLSearchParams(new FormData(body)) : JSON.stringify(body)})
			.then(function (res) {
				return res.json().then(function (data) {
					if (!res.ok) {
						var e = data.error;
						throw new Error(typeof e === "string" ? e : Object.keys(e).map(function (k) { return e[k]; }).join(" "));
					}
					return data;
				});
			});
	}
	function say(el, message) {
		if (el) {
			el.textContent = message;
			el.className = "error";
			el.hidden = !message;
		}
	}

	// Logging in: a button, and the autofill where the browser offers it.
	function logIn(mediation, signal) {
		var status = document.getElementById("passkey-status");
		var returnTo = document.querySelector("input[name=return_to]");
		return post("/login/passkey" + (mediation ? "?mediation=" + mediation : ""), {}).then(function (begun) {
			var o = begun.options.publicKey;
			o.challenge = bytes(o.challenge);
			o.allowCredentials = descriptors(o.allowCredentials);
			var ask = {publicKey: o, signal: signal};
			if (mediation) {
				ask.mediation = mediation;
			}
			return navigator.credentials.get(ask).then(function (c) {
				return post("/login/passkey/finish", {ceremony: begun.ceremony, credential: credentialJSON(c), return_to: returnTo ? returnTo.value : ""});
			});
		}).then(function (done) {
			window.location.assign(done.next);
		}).catch(function (e) {
			if (e.name !== "AbortError" && e.name !== "NotAllowedError") {
				say(status, e.message);
			}
		});
	}
	var button = document.getElementById("passkey-login");
	if (button) {
		var autofill = null;
		button.hidden = false;
		button.addEventListener("click", function () {
			if (autofill) {
				autofill.abort();
			}
			logIn("");
		});
		if (PublicKeyCredential.isConditionalMediationAvailable) {
			PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
				if (yes) {
					autofill = new AbortController();
					logIn("conditional", autofill.signal);
				}
			});
		}
	}

	// Every other ceremony is a button: data-passkey "create" (a new
	// passkey: added on the account page, a signup's, an activation's)
	// or "get" (an existing one confirms: the account page's proof, an
	// activation); data-begin is posted the button's form and answers
	// the options, data-finish is posted the browser's credential and
	// answers where to go next.
	function ceremony(button) {
		var form = button.form;
		var status = form.querySelector(".passkey-status");
		var field = function (name) {
			var el = form.elements.namedItem(name);
			return el ? el.value : "";
		};
		say(status, "");
		post(button.dataset.begin, form, true).then(function (begun) {
			var o = begun.options.publicKey, made;
			o.challenge = bytes(o.challenge);
			if (button.dataset.passkey === "create") {
				o.user.id = bytes(o.user.id);
				o.excludeCredentials = descriptors(o.excludeCredentials);
				made = navigator.credentials.create({publicKey: o});
			} else {
				o.allowCredentials = descriptors(o.allowCredentials);
				made = navigator.credentials.get({publicKey: o});
			}
			return made.then(function (c) {
				return post(button.dataset.finish, {ceremony: begun.ceremony, credential: credentialJSON(c),
					name: field("name"), token: field("token"), return_to: field("return_to")});
			});
		}).then(function (done) {
			window.location.assign(done.next);
		}).catch(function (e) {
			say(status, e.message);
		});
	}
	document.querySelectorAll("button[data-passkey]").forEach(function (button) {
		button.hidden = false;
		button.form.hidden = false;
		// A submit button's form is the ceremony's alone (Enter starts it).
		var on = button.type === "submit" ? [button.form, "submit"] : [button, "click"];
		on[0].addEventListener(on[1], function (event) {
			event.preventDefault();
			ceremony(button);
		});
	});
	document.querySelectorAll("[data-passkey-only]").forEach(function (el) {
		el.hidden = false;
	});
})();
