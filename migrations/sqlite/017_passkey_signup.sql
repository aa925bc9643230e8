-- Signing up with a passkey. Each passkey keeps the WebAuthn user handle
-- it was made with: the account's id for one added on the account page,
-- random for one made at signup, before any account is chosen (a signup's
-- answer never says whether the address has one). A session a passkey
-- has just confirmed may make one sensitive change without the password
-- until proven_until.
ALTER TABLE passkeys ADD COLUMN handle BLOB NOT NULL DEFAULT x'';
UPDATE passkeys SET handle = CAST(CAST(user_id AS TEXT) AS BLOB);
ALTER TABLE tokens ADD COLUMN proven_until INTEGER NOT NULL DEFAULT 0;
