package admin

import "time"

// Login throttle: after loginMaxFailures failed logins from one client
// within loginWindow, further attempts are refused until the oldest of them
// leaves the window (internal/throttle; IPv6 counts per /64).
const (
	loginMaxFailures = 5
	loginWindow      = 15 * time.Minute
)
