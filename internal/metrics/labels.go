package metrics

import (
	"strconv"
	"sync"

	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// Attempt outcomes that are not failover kinds.
const (
	outcomeOK          = "ok"
	outcomeClientError = "client_error"
	outcomeCanceled    = "canceled"
	// outcomeFailover is a failover that did not rest the account (its
	// serial queue or concurrency was full).
	outcomeFailover = "failover"
)

// failureLabel names a failed attempt by what it did to the account: the
// cooldown kind (cooling_down, rate_limited, credential_dead, blocked),
// which is what an operator acts on.
func failureLabel(o provider.Outcome) string {
	switch o.Kind {
	case provider.OK:
		return outcomeOK
	case provider.ClientError:
		return outcomeClientError
	}
	if o.Cooldown == store.CooldownNone {
		return outcomeFailover
	}
	return string(o.Cooldown)
}

// platformLabel is the platform, or "none" for requests no pool served.
func platformLabel(p store.Platform) string {
	if p == "" {
		return "none"
	}
	return string(p)
}

// maxModels bounds the distinct model labels. Model names come from
// upstream usage reports, so they are few in practice; the cap keeps a
// misbehaving upstream (or a custom base URL echoing anything) from
// growing the series without bound.
const maxModels = 200

// maxModelLen bounds one model label.
const maxModelLen = 100

// otherModel is the label of models past the cap.
const otherModel = "other"

// labelSet admits at most max distinct values; later ones become
// otherModel. Reads of admitted values take a shared lock and allocate
// nothing.
type labelSet struct {
	mu   sync.RWMutex
	seen map[string]struct{}
	max  int
}

func newLabelSet(max int) *labelSet {
	return &labelSet{seen: make(map[string]struct{}), max: max}
}

func (s *labelSet) label(v string) string {
	if v == "" {
		return "unknown"
	}
	if len(v) > maxModelLen {
		return otherModel
	}
	s.mu.RLock()
	_, ok := s.seen[v]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return otherModel
	}
	s.seen[v] = struct{}{}
	return v
}

// statusLabels holds the decimal text of every HTTP status, so labelling a
// request by status costs no allocation.
type statusLabels []string

func newStatusLabels() statusLabels {
	s := make(statusLabels, 600)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}

func (s statusLabels) of(code int) string {
	if code >= 0 && code < len(s) {
		return s[code]
	}
	return strconv.Itoa(code)
}
