// Package provider holds what every upstream family shares: the typed
// outcome of one upstream attempt. Each family (provider/anthropic, …)
// classifies its own statuses, headers and error events into an Outcome in
// one place; the relay switches on the Kind and never on strings.
package provider

import (
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Kind is what the relay should do after an attempt.
type Kind int

// Outcome kinds.
const (
	// OK: the upstream answered; pass it on.
	OK Kind = iota
	// Failover: this account cannot serve now; rest it until Until (with
	// CooldownKind) and try another account if nothing was written yet.
	Failover
	// ClientError: the request itself is wrong; another account would say
	// the same, so the upstream answer goes to the client as it is.
	ClientError
)

func (k Kind) String() string {
	switch k {
	case OK:
		return "ok"
	case Failover:
		return "failover"
	case ClientError:
		return "client-error"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Outcome classifies one upstream attempt.
type Outcome struct {
	Kind Kind
	// Cooldown and Until say how long the account rests (Failover only).
	Cooldown store.CooldownKind
	Until    time.Time
	// Family, when set, narrows the rest to one model family ("opus"):
	// the account stays routable for the others.
	Family string
	// Status is the upstream HTTP status (0 for transport errors).
	Status int
	// Reason is a short human text for logs and `crs accounts list`.
	Reason string
}

// Rest builds a Failover outcome resting the account for d.
func Rest(now time.Time, kind store.CooldownKind, d time.Duration, status int, reason string) Outcome {
	return Outcome{Kind: Failover, Cooldown: kind, Until: now.Add(d), Status: status, Reason: reason}
}

// Cooldowns every protocol shares.
const (
	// TransportCooldown rests an account that could not be reached or
	// answered nothing in time.
	TransportCooldown = 60 * time.Second
	// CredentialCooldown rests an account whose credential was refused or
	// cannot be used.
	CredentialCooldown = 30 * time.Minute
)

// Transport classifies a failure to get an answer at all: connect errors,
// resets and timeouts before the first event. It is the same for every
// upstream.
func Transport(now time.Time, err error) Outcome {
	return Rest(now, store.CooldownTransient, TransportCooldown, 0, "transport: "+err.Error())
}
