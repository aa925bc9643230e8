package main

// seal.go seals composed messages in the outbox with a key kept beside the SQLite
// database, so that no copy of the database alone holds a readable token.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// loadSealKey reads the key that seals composed messages from path, beside
// the database, creating it (32 random bytes, mode 0600) if it is missing.
// Copies of the database alone — a Litestream replica, a backup, the WAL's
// old frames — then hold no readable token: the key never enters them.
func loadSealKey(path string) (cipher.AEAD, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		err = writeNewFile(path, key)
		if errors.Is(err, fs.ErrExist) { // another process made it first
			key, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("message key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("message key %s: %d bytes, want 32", path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// writeNewFile writes data to a new file at path, mode 0600, durably.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// sealed messages start with this byte; a composed message never does.
const sealedVersion = 1

// sealMessage encrypts msg for the outbox, if this store seals.
func (st *store) sealMessage(msg []byte) []byte {
	if st.seal == nil || msg == nil {
		return msg
	}
	nonce := make([]byte, st.seal.NonceSize(), st.seal.NonceSize()+len(msg)+st.seal.Overhead()+1)
	rand.Read(nonce)
	return append([]byte{sealedVersion}, st.seal.Seal(nonce, nonce, msg, nil)...)
}

// errUnsealable means a sealed message cannot be opened with this key (the
// database was restored on another machine without its key file): the
// email must be composed afresh.
var errUnsealable = errors.New("message sealed with another key")

// openMessage decrypts a message from the outbox; one stored unsealed (by
// PostgreSQL, or before sealing existed) comes back as it is.
func (st *store) openMessage(blob []byte) ([]byte, error) {
	if len(blob) == 0 || blob[0] != sealedVersion {
		return blob, nil
	}
	if st.seal == nil || len(blob) < 1+st.seal.NonceSize() {
		return nil, errUnsealable
	}
	n := st.seal.NonceSize()
	msg, err := st.seal.Open(nil, blob[1:1+n], blob[1+n:], nil)
	if err != nil {
		return nil, errUnsealable
	}
	return msg, nil
}
