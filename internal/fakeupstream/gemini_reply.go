package fakeupstream

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// geminiReply writes one answer of the fake Gemini, honouring the fault's
// pinned headers.
type geminiReply struct {
	w http.ResponseWriter
	// domain is the ErrorInfo domain of generated errors: the service that
	// answers (generativelanguage or cloudcode-pa).
	domain string
	// arrayErrors wraps error bodies in a JSON array, as the Code Assist
	// streaming method does.
	arrayErrors bool
	// pinned holds the fault's headers, which the fake's own must not
	// replace.
	pinned http.Header
}

// pin adds a fault's headers to the response and remembers them.
func (rep *geminiReply) pin(h http.Header) {
	if len(h) == 0 {
		return
	}
	rep.pinned = h.Clone()
	for k, vs := range h {
		for _, v := range vs {
			rep.w.Header().Add(k, v)
		}
	}
}

// setHeader sets a header the fake generates unless the fault pinned it.
func (rep *geminiReply) setHeader(key, value string) {
	if len(rep.pinned.Values(key)) > 0 {
		return
	}
	rep.w.Header().Set(key, value)
}

// googleErrorDetails are the optional parts of a Google error body.
type googleErrorDetails struct {
	// status overrides the canonical status name derived from the code
	// (400 is INVALID_ARGUMENT unless told FAILED_PRECONDITION).
	status string
	// reason, when set, adds a google.rpc.ErrorInfo; domain defaults to
	// the answering service's.
	reason   string
	domain   string
	metadata map[string]string
	// retryDelay, when > 0, adds a google.rpc.RetryInfo.
	retryDelay time.Duration
}

// googleStatusFor maps an HTTP status to the canonical gRPC status name
// Google APIs put in error.status.
func googleStatusFor(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusPreconditionFailed:
		return "FAILED_PRECONDITION"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	if code >= 500 {
		return "INTERNAL"
	}
	return "INVALID_ARGUMENT"
}

// googleDefaultMessage is the message used when a fault gives none, the
// real services' wording for the status.
func googleDefaultMessage(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "Request contains an invalid argument."
	case http.StatusUnauthorized:
		return "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
	case http.StatusForbidden:
		return "The caller does not have permission"
	case http.StatusNotFound:
		return "Requested entity was not found."
	case http.StatusTooManyRequests:
		return "Resource has been exhausted (e.g. check quota)."
	case http.StatusInternalServerError:
		return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	case http.StatusServiceUnavailable:
		return "The model is overloaded. Please try again later."
	case http.StatusGatewayTimeout:
		return "Deadline expired before operation could complete."
	}
	return http.StatusText(code)
}

type googleErrorInfo struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type googleRetryInfo struct {
	Type       string `json:"@type"`
	RetryDelay string `json:"retryDelay"`
}

type googleErrorStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []any  `json:"details,omitempty"`
}

type googleErrorJSON struct {
	Error googleErrorStatus `json:"error"`
}

// googleErrorBody is the Google API error shape
// {"error":{code, message, status, details}}, used for HTTP errors and for
// the error chunk inside a stream.
func googleErrorBody(code int, msg string, d googleErrorDetails, domain string) []byte {
	if msg == "" {
		msg = googleDefaultMessage(code)
	}
	st := d.status
	if st == "" {
		st = googleStatusFor(code)
	}
	e := googleErrorStatus{Code: code, Message: msg, Status: st}
	if d.reason != "" {
		if d.domain != "" {
			domain = d.domain
		}
		e.Details = append(e.Details, googleErrorInfo{Type: "type.googleapis.com/google.rpc.ErrorInfo",
			Reason: d.reason, Domain: domain, Metadata: d.metadata})
	}
	if d.retryDelay > 0 {
		e.Details = append(e.Details, googleRetryInfo{Type: "type.googleapis.com/google.rpc.RetryInfo",
			RetryDelay: googleDuration(d.retryDelay)})
	}
	b, _ := json.Marshal(googleErrorJSON{Error: e})
	return b
}

// googleDuration writes a protobuf Duration in its JSON form: seconds with
// an "s" suffix ("35s", "0.5s").
func googleDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// error answers with code and a generated Google error body.
func (rep *geminiReply) error(code int, msg string, d googleErrorDetails) {
	rep.errorRaw(code, googleErrorBody(code, msg, d, rep.domain))
}

// errorRaw answers with code and body, wrapped in an array where the route
// does that.
func (rep *geminiReply) errorRaw(code int, body []byte) {
	if rep.arrayErrors {
		body = append(append([]byte("["), body...), ']')
	}
	rep.setHeader("Content-Type", "application/json; charset=UTF-8")
	rep.raw(code, body, false)
}

// fault answers with a fault's error status: its Body verbatim, or a
// generated body with its Reason and RetryDelay.
func (rep *geminiReply) fault(f GeminiFault) {
	if f.Body != "" {
		rep.setHeader("Content-Type", "application/json; charset=UTF-8")
		rep.raw(f.Status, []byte(f.Body), false)
		return
	}
	rep.error(f.Status, "", googleErrorDetails{reason: f.Reason, retryDelay: f.RetryDelay})
}

func (rep *geminiReply) json(code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakeupstream: marshal gemini reply: " + err.Error()) // a bug in the fake's own types
	}
	rep.setHeader("Content-Type", "application/json; charset=UTF-8")
	rep.raw(code, b, false)
}

// raw writes a complete body; cut writes only its first half and then
// drops the connection.
func (rep *geminiReply) raw(code int, body []byte, cut bool) {
	rep.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	rep.w.WriteHeader(code)
	if cut {
		_, _ = rep.w.Write(body[:len(body)/2])
		dropConnection(rep.w)
		return
	}
	_, _ = rep.w.Write(body)
}
