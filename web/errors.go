package web

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/custos-pam/custos/broker"
)

// APIError is the JSON body of every error response: a machine-readable
// code and a message for people.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody wraps APIError as {"error": {...}}.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an APIError.
func WriteError(w http.ResponseWriter, code int, errCode, msg string) {
	WriteJSON(w, code, ErrorBody{Error: APIError{Code: errCode, Message: msg}})
}

// DecodeJSON reads a JSON request body of at most 1 MiB into v, rejecting
// unknown fields.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errors.New("request body too large")
		}
		return errors.New("malformed JSON body: " + err.Error())
	}
	return nil
}

// decodeOptional reads an optional JSON body into v (DecodeJSON): an
// empty body leaves v as it is; a malformed one is answered 400
// bad_request, and decodeOptional returns false.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	if err := DecodeJSON(r, v); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	return true
}

// StatusOf is the HTTP status of a refusal's kind: the one place where
// the broker's kinds of refusal become status codes.
func StatusOf(k broker.Kind) int {
	switch k {
	case broker.KindNotFound:
		return http.StatusNotFound
	case broker.KindForbidden:
		return http.StatusForbidden
	case broker.KindConflict:
		return http.StatusConflict
	case broker.KindInvalid:
		return http.StatusUnprocessableEntity
	case broker.KindUnavailable:
		return http.StatusServiceUnavailable
	case broker.KindUnauthenticated:
		return http.StatusUnauthorized
	case broker.KindRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// WriteFailure answers err: a broker.Error with its kind's status, code
// and message; a state store that could not be reached as a 503
// (store_unavailable: try again); anything else as a
// 500 without its text, which is logged.
func WriteFailure(w http.ResponseWriter, log interface {
	Error(msg string, args ...any)
}, err error) {
	if e, ok := broker.AsError(err); ok {
		WriteError(w, StatusOf(e.Kind), e.Code, e.Message)
		return
	}
	if errors.Is(err, broker.ErrStoreUnavailable) {
		log.Error("api: state store unavailable", "err", err)
		WriteError(w, http.StatusServiceUnavailable, "store_unavailable", "the state store is unavailable; try again")
		return
	}
	log.Error("api: request failed", "err", err)
	WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}
