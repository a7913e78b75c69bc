package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/store"
)

// IdempotencyHeader makes a creating call safe to retry: the first answer
// is stored and replayed for the same key, so a retry after a lost response
// does not create a second device.
const IdempotencyHeader = "Idempotency-Key"

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// maxIdempotentBody bounds what is read into memory to fingerprint a request;
// larger bodies are refused by the handlers' own limits anyway.
const maxIdempotentBody = 1 << 20

type recorder struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

func (a *API) idempotency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyHeader)
		p := authz.From(r.Context())
		if key == "" || r.Method != http.MethodPost || p == nil {
			next.ServeHTTP(w, r)
			return
		}
		if len(key) > 255 {
			writeProblem(w, r, http.StatusBadRequest, IdempotencyHeader+" must be at most 255 characters")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxIdempotentBody+1))
		if err != nil {
			writeProblem(w, r, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
		if len(body) > maxIdempotentBody {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "request body is larger than 1 MiB")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h := sha256.New()
		io.WriteString(h, r.Method+" "+r.URL.RequestURI()+"\n"+r.Header.Get(TenantHeader)+"\n")
		h.Write(body)
		rec := &store.IdempotencyRecord{Scope: p.KeyID, Key: key, RequestHash: h.Sum(nil), CreatedAt: now()}
		prev, err := a.Store.ReserveIdempotency(r.Context(), rec)
		if errors.Is(err, store.ErrConflict) {
			// Two first uses of the key raced (PostgreSQL: both found no
			// row, the other insert won). The key is taken now: look again
			// to replay, refuse or report it as in progress.
			prev, err = a.Store.ReserveIdempotency(r.Context(), rec)
		}
		if errors.Is(err, store.ErrConflict) {
			writeProblem(w, r, http.StatusConflict,
				"a request with "+IdempotencyHeader+" "+strconv.Quote(key)+" is still being processed; retry shortly")
			return
		}
		if err != nil {
			logFrom(r.Context()).Error("idempotency reserve", "err", err)
			writeProblem(w, r, http.StatusInternalServerError, "internal error (request id "+requestID(r.Context())+")")
			return
		}
		if prev != nil {
			switch {
			case !bytes.Equal(prev.RequestHash, rec.RequestHash):
				writeProblem(w, r, http.StatusUnprocessableEntity,
					IdempotencyHeader+" "+strconv.Quote(key)+" was already used for a different request; use a new key")
			case prev.Status == 0:
				writeProblem(w, r, http.StatusConflict,
					"a request with "+IdempotencyHeader+" "+strconv.Quote(key)+" is still being processed; retry shortly")
			default:
				w.Header().Set("Content-Type", contentTypeFor(prev.Status))
				w.Header().Set("Idempotent-Replayed", "true")
				w.WriteHeader(prev.Status)
				w.Write(prev.Body)
			}
			return
		}
		rw := &recorder{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		// Server errors are not remembered: the request may be retried.
		if rw.status >= 500 || rw.status == 0 {
			if err := a.Store.ReleaseIdempotency(r.Context(), rec.Scope, rec.Key); err != nil {
				logFrom(r.Context()).Warn("idempotency release", "err", err)
			}
			return
		}
		rec.Status, rec.Body = rw.status, rw.buf.Bytes()
		if err := a.Store.CompleteIdempotency(r.Context(), rec); err != nil {
			logFrom(r.Context()).Warn("idempotency complete", "err", err)
		}
	})
}

func contentTypeFor(status int) string {
	if status >= 400 {
		return "application/problem+json"
	}
	return "application/json"
}
