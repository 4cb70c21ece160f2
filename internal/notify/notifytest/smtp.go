package notifytest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is one message the SMTP server accepted.
type Mail struct {
	// User is who logged in with AUTH PLAIN ("" without login).
	User string
	From string
	To   []string
	// Raw is the message as sent, dot-unstuffed.
	Raw []byte
	// Subject and Body are decoded (RFC 2047 subject, base64 or plain
	// body).
	Subject string
	Body    string
	Header  mail.Header
}

// SMTP is a minimal loopback SMTP server: EHLO, AUTH PLAIN, MAIL, RCPT,
// DATA, RSET, NOOP, QUIT; no TLS (net/smtp sends a password in the clear
// only to a loopback host, which this is).
type SMTP struct {
	ln net.Listener

	mu       sync.Mutex
	user     string // with password, required (AUTH PLAIN) before MAIL
	password string
	mails    []Mail
	failMail int // answer the next MAIL FROM commands 451
	arrived  chan struct{}
	wg       sync.WaitGroup
}

// StartSMTP starts a server that stops when tb ends.
func StartSMTP(tb testing.TB) *SMTP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SMTP{ln: ln, arrived: make(chan struct{}, 1)}
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// Host and Port are where the server listens.
func (s *SMTP) Host() string { return "127.0.0.1" }

// Port is the listening port.
func (s *SMTP) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// RequireLogin makes the server refuse MAIL until AUTH PLAIN logged in
// with user and password.
func (s *SMTP) RequireLogin(user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.password = user, password
}

// FailNext answers the next n MAIL FROM commands with 451 (try later).
func (s *SMTP) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failMail = n
}

// Mails returns the accepted messages.
func (s *SMTP) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Wait waits until at least n messages arrived or fails the test after
// timeout.
func (s *SMTP) Wait(tb testing.TB, n int, timeout time.Duration) []Mail {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := s.Mails(); len(got) >= n {
			return got
		}
		select {
		case <-s.arrived:
		case <-deadline.C:
			got := s.Mails()
			tb.Fatalf("smtp server: %d messages after %v, want %d", len(got), timeout, n)
			return got
		}
	}
}

func (s *SMTP) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			s.session(c)
		}()
	}
}

func (s *SMTP) session(c net.Conn) {
	rd := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 crs-test ESMTP")
	var m Mail
	s.mu.Lock()
	user, password := s.user, s.password
	s.mu.Unlock()
	authed := user == ""
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-crs-test")
			say("250-AUTH PLAIN")
			say("250 8BITMIME")
		case "HELO":
			say("250 crs-test")
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				say("504 unsupported mechanism")
				continue
			}
			if resp == "" {
				say("334 ")
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				resp = strings.TrimSpace(l)
			}
			raw, _ := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(raw), "\x00")
			if len(parts) != 3 || parts[1] != user || parts[2] != password {
				say("535 authentication failed")
				continue
			}
			authed, m.User = true, parts[1]
			say("235 authenticated")
		case "MAIL":
			s.mu.Lock()
			fail := s.failMail > 0
			if fail {
				s.failMail--
			}
			s.mu.Unlock()
			switch {
			case !authed:
				say("530 authentication required")
			case fail:
				say("451 try again later")
			default:
				m.From = addrArg(arg)
				say("250 ok")
			}
		case "RCPT":
			m.To = append(m.To, addrArg(arg))
			say("250 ok")
		case "DATA":
			say("354 end with <CRLF>.<CRLF>")
			var buf bytes.Buffer
			for {
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				buf.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Raw = buf.Bytes()
			decode(&m)
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			select {
			case s.arrived <- struct{}{}:
			default:
			}
			m = Mail{User: m.User}
			say("250 queued")
		case "RSET":
			m = Mail{User: m.User}
			say("250 ok")
		case "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 command not implemented")
		}
	}
}

// addrArg takes the address out of "FROM:<a@b>" or "TO:<a@b> SIZE=1".
func addrArg(arg string) string {
	if i := strings.IndexByte(arg, '<'); i >= 0 {
		if j := strings.IndexByte(arg[i:], '>'); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	_, a, _ := strings.Cut(arg, ":")
	return strings.TrimSpace(a)
}

func decode(m *Mail) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return
	}
	m.Header = msg.Header
	dec := new(mime.WordDecoder)
	if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
		m.Subject = subj
	}
	body, _ := io.ReadAll(msg.Body)
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "base64") {
		if b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), "")); err == nil {
			body = b
		}
	}
	m.Body = strings.ReplaceAll(string(body), "\r\n", "\n")
}
