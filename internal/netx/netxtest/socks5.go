package netxtest

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SOCKS5 is a SOCKS5 server on 127.0.0.1 (RFC 1928, CONNECT only, IPv4 and
// domain-name targets) with optional RFC 1929 user/password authentication.
// It only connects to 127.0.0.1 (a domain target must be "localhost") and
// answers "not allowed by ruleset" to anything else.
type SOCKS5 struct {
	ln         net.Listener
	user, pass string
	tunnels    tunnels
	forwarded  atomic.Int64
	rejected   atomic.Int64

	mu      sync.Mutex
	targets []string
}

// SOCKS5 protocol constants (RFC 1928 §3–6, RFC 1929 §2).
const (
	socksVersion       = 5
	authNone           = 0x00
	authUserPass       = 0x02
	authNoAcceptable   = 0xff
	userPassVersion    = 1
	cmdConnect         = 1
	atypIPv4           = 1
	atypDomain         = 3
	repSucceeded       = 0x00
	repNotAllowed      = 0x02
	repRefused         = 0x05
	repCmdUnsupported  = 0x07
	repAtypUnsupported = 0x08
)

// StartSOCKS5 starts the server. An empty user means no authentication is
// required (method 0x00). It stops on tb.Cleanup, closing open tunnels.
func StartSOCKS5(tb testing.TB, user, pass string) *SOCKS5 {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("netxtest: listen: %v", err)
	}
	s := &SOCKS5{ln: ln, user: user, pass: pass}
	s.tunnels.wg.Add(1)
	go s.acceptLoop()
	tb.Cleanup(func() {
		ln.Close()
		s.tunnels.closeAll()
	})
	return s
}

// URL returns "socks5://user:pass@127.0.0.1:port" with the configured
// credentials (no userinfo when the server needs none).
func (s *SOCKS5) URL() string { return s.URLWith("socks5", s.user, s.pass) }

// URLWith returns the server's URL with another scheme ("socks5h") or other
// credentials, for testing name resolution and refusals.
func (s *SOCKS5) URLWith(scheme, user, pass string) string {
	u := &url.URL{Scheme: scheme, Host: s.ln.Addr().String()}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *SOCKS5) Addr() string { return s.ln.Addr().String() }

// Count returns how many CONNECT tunnels the server established.
func (s *SOCKS5) Count() int64 { return s.forwarded.Load() }

// Rejected returns how many clients were refused for their credentials:
// wrong user/password, or no acceptable authentication method offered.
func (s *SOCKS5) Rejected() int64 { return s.rejected.Load() }

// Targets returns the CONNECT targets as clients sent them, in order:
// "127.0.0.1:port" for an IPv4 address, "localhost:port" for a domain name.
func (s *SOCKS5) Targets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.targets...)
}

func (s *SOCKS5) acceptLoop() {
	defer s.tunnels.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.tunnels.track(c) {
			return
		}
		go func() {
			defer s.tunnels.done(c)
			s.handle(c)
		}()
	}
}

// handle runs one client: negotiation, auth, request, then the tunnel.
func (s *SOCKS5) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if !s.negotiate(c) {
		return
	}
	target, rep, err := s.readRequest(c)
	if err != nil {
		if rep != 0 {
			reply(c, rep)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := dialLoopback(ctx, target)
	cancel()
	if err != nil {
		reply(c, repRefused)
		return
	}
	if !s.tunnels.track(up) {
		return
	}
	defer s.tunnels.done(up)
	s.forwarded.Add(1)
	if reply(c, repSucceeded) != nil {
		return
	}
	c.SetDeadline(time.Time{})
	splice(c, up)
}

// negotiate does the method selection and, if required, RFC 1929 auth.
func (s *SOCKS5) negotiate(c net.Conn) bool {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != socksVersion {
		return false
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return false
	}
	want := byte(authNone)
	if s.user != "" {
		want = authUserPass
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		s.rejected.Add(1) // before the reply, so a client that saw it sees the count
		c.Write([]byte{socksVersion, authNoAcceptable})
		return false
	}
	if _, err := c.Write([]byte{socksVersion, want}); err != nil {
		return false
	}
	if want == authNone {
		return true
	}
	// RFC 1929: VER ULEN UNAME PLEN PASSWD.
	var ver [2]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil || ver[0] != userPassVersion {
		return false
	}
	name := make([]byte, ver[1])
	if _, err := io.ReadFull(c, name); err != nil {
		return false
	}
	var plen [1]byte
	if _, err := io.ReadFull(c, plen[:]); err != nil {
		return false
	}
	pass := make([]byte, plen[0])
	if _, err := io.ReadFull(c, pass); err != nil {
		return false
	}
	ok := subtle.ConstantTimeCompare(name, []byte(s.user)) == 1 &&
		subtle.ConstantTimeCompare(pass, []byte(s.pass)) == 1
	status := byte(1)
	if ok {
		status = 0
	} else {
		s.rejected.Add(1) // before the reply, as above
	}
	if _, err := c.Write([]byte{userPassVersion, status}); err != nil {
		return false
	}
	return ok
}

// readRequest reads VER CMD RSV ATYP DST.ADDR DST.PORT and returns the target
// as host:port. On refusal it returns the reply code to send.
func (s *SOCKS5) readRequest(c net.Conn) (string, byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", 0, err
	}
	if hdr[0] != socksVersion {
		return "", 0, errors.New("bad version")
	}
	if hdr[1] != cmdConnect {
		return "", repCmdUnsupported, errors.New("command not supported")
	}
	var host string
	switch hdr[3] {
	case atypIPv4:
		var ip [4]byte
		if _, err := io.ReadFull(c, ip[:]); err != nil {
			return "", 0, err
		}
		host = net.IP(ip[:]).String()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", 0, err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return "", 0, err
		}
		host = string(name)
	default:
		return "", repAtypUnsupported, errors.New("address type not supported")
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return "", 0, err
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:]))))
	s.mu.Lock()
	s.targets = append(s.targets, target)
	s.mu.Unlock()
	if !allowedHost(host) {
		return "", repNotAllowed, errors.New("target not allowed")
	}
	return target, 0, nil
}

// reply sends a reply with a zero IPv4 bound address.
func reply(c net.Conn, rep byte) error {
	_, err := c.Write([]byte{socksVersion, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}
