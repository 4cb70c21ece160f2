package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/crs-relay/crs/internal/secret"
)

// implicitTLSPort is SMTP submission over TLS from the first byte (RFC
// 8314); every other port starts plain and upgrades with STARTTLS when
// the server offers it.
const implicitTLSPort = 465

// sendMail delivers m by e-mail. The whole session is bounded by ctx.
// net/smtp's PLAIN auth refuses to send a password over an unencrypted
// connection to anything but a loopback host, so a server without TLS
// gets no password.
func (s *Sender) sendMail(ctx context.Context, ch Channel, m Message) error {
	addr := net.JoinHostPort(ch.SMTPHost, strconv.Itoa(ch.SMTPPort))
	fail := func(step string, err error) error {
		var te *textproto.Error
		// 5xx is the server refusing for good (bad login, unknown
		// recipient); 4xx and network errors may pass.
		p := errors.As(err, &te) && te.Code >= 500
		return &SendError{Permanent: p, Err: fmt.Errorf("smtp %s: %s: %w", addr, step, err)}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("connect", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	tlsConf := &tls.Config{ServerName: ch.SMTPHost, MinVersion: tls.VersionTLS12}
	if ch.SMTPPort == implicitTLSPort {
		conn = tls.Client(conn, tlsConf)
	}
	c, err := smtp.NewClient(conn, ch.SMTPHost)
	if err != nil {
		return fail("greeting", err)
	}
	defer c.Close()
	if err := c.Hello("crs.localhost"); err != nil {
		return fail("EHLO", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok && ch.SMTPPort != implicitTLSPort {
		if err := c.StartTLS(tlsConf); err != nil {
			return fail("STARTTLS", err)
		}
	}
	if ch.SMTPUser != "" {
		if err := c.Auth(smtp.PlainAuth("", ch.SMTPUser, ch.SMTPPassword, ch.SMTPHost)); err != nil {
			return fail("AUTH", err)
		}
	}
	from, err := mail.ParseAddress(ch.From)
	if err != nil {
		return permanent("smtp: bad sender address")
	}
	if err := c.Mail(from.Address); err != nil {
		return fail("MAIL FROM", err)
	}
	var to []string
	for _, a := range ch.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return permanent("smtp: bad recipient address %q", a)
		}
		if err := c.Rcpt(addr.Address); err != nil {
			return fail("RCPT TO "+addr.Address, err)
		}
		to = append(to, addr.String())
	}
	w, err := c.Data()
	if err != nil {
		return fail("DATA", err)
	}
	if _, err := w.Write(mailMessage(from, to, m)); err != nil {
		return fail("DATA", err)
	}
	if err := w.Close(); err != nil {
		return fail("DATA", err)
	}
	if err := c.Quit(); err != nil {
		// The message was accepted at the end of DATA; a failed goodbye
		// does not unsend it.
		return nil
	}
	return nil
}

// mailMessage is the RFC 5322 message: UTF-8 plain text, base64 encoded
// so any line length and script survive every relay.
func mailMessage(from *mail.Address, to []string, m Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject()))
	h("Date", m.At.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	h("Message-ID", "<"+secret.RandomHex(12)+"@crs.localhost>")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "base64")
	h("X-Crs-Event", string(m.Kind))
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(m.Body(), "\n", "\r\n")))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}
