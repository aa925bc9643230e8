package main

// capture.go is development mail capture: an SMTP server on loopback that writes
// each message it receives to a file.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

// capture is the development mail server: it writes each message it
// receives to a file in its directory.
type capture struct {
	server *smtp.Server
	addr   string
}

// startCapture serves SMTP on a free port of 127.0.0.1, writing each message
// as an .eml file into dir.
func startCapture(dir string, logger *slog.Logger) (*capture, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail capture: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mail capture: %w", err)
	}
	s := smtp.NewServer(&captureBackend{dir: dir, logger: logger})
	s.Domain = "localhost"
	s.ReadTimeout = time.Minute
	s.WriteTimeout = time.Minute
	go s.Serve(ln)
	return &capture{server: s, addr: ln.Addr().String()}, nil
}

// close stops the capture server.
func (c *capture) close() { c.server.Close() }

type captureBackend struct {
	dir    string
	logger *slog.Logger
	seq    atomic.Int64
}

func (b *captureBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &captureMail{backend: b}, nil
}

type captureMail struct {
	backend *captureBackend
	to      []string
}

func (s *captureMail) Mail(string, *smtp.MailOptions) error { return nil }

func (s *captureMail) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *captureMail) Reset() { s.to = nil }

func (s *captureMail) Logout() error { return nil }

func (s *captureMail) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%d.eml", time.Now().UTC().Format("20060102T150405.000Z"), s.backend.seq.Add(1))
	file := filepath.Join(s.backend.dir, name)
	// Write, then rename: a reader of the directory never sees half a message.
	tmp := filepath.Join(s.backend.dir, "."+name+".tmp")
	err = os.WriteFile(tmp, msg, 0o600)
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		s.backend.logger.Error("mail capture", "error", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot write the message"}
	}
	// In development only, the link goes in the log too, to click from the
	// terminal: production never logs a token.
	s.backend.logger.Info("email captured", "to", strings.Join(s.to, ","), "file", file, "link", plainLink(msg))
	return nil
}

// plainLink returns the first line of msg's plain part that is a link, or "".
func plainLink(msg []byte) string {
	r, err := mail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	for {
		p, err := r.NextPart()
		if err != nil {
			return ""
		}
		if h, ok := p.Header.(*mail.InlineHeader); ok {
			if ct, _, _ := h.ContentType(); ct != "text/plain" {
				continue
			}
		}
		body, _ := io.ReadAll(p.Body)
		for line := range strings.Lines(string(body)) {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "http://") || strings.HasPrefix(line, "https://") {
				return line
			}
		}
		return ""
	}
}
