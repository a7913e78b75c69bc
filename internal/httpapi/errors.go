package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// Problem types name each kind of error; clients can switch on them and
// people can read the page they point at.
const problemBase = "https://steward.dev/problems/"

// Every error leaves as RFC 9457 problem details. huma's ErrorModel already
// is one; this adds a stable type URI per status.
func init() {
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		details := make([]*huma.ErrorDetail, 0, len(errs))
		for _, e := range errs {
			if e == nil {
				continue
			}
			var d huma.ErrorDetailer
			if errors.As(e, &d) {
				details = append(details, d.ErrorDetail())
			} else {
				details = append(details, &huma.ErrorDetail{Message: e.Error()})
			}
		}
		return &huma.ErrorModel{Type: problemBase + problemSlug(status), Title: http.StatusText(status), Status: status,
			Detail: msg, Errors: details}
	}
}

func problemSlug(status int) string {
	switch status {
	case 400:
		return "bad-request"
	case 401:
		return "unauthenticated"
	case 403:
		return "forbidden"
	case 404:
		return "not-found"
	case 409:
		return "conflict"
	case 412:
		return "precondition-failed"
	case 413:
		return "too-large"
	case 422:
		return "invalid"
	case 429:
		return "rate-limited"
	case 503:
		return "unavailable"
	}
	return "error"
}

// apiErr maps domain and store errors onto problem responses. Anything not
// recognised is an internal error whose details stay in the log.
func apiErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var se huma.StatusError
	if errors.As(err, &se) {
		return err
	}
	var inv *registry.InvalidError
	var ill *lifecycle.IllegalTransitionError
	var conflict *store.ConflictError
	var inUse *store.InUseError
	var forb *registry.ForbiddenError
	switch {
	case errors.As(err, &inv):
		return huma.Error422UnprocessableEntity(inv.Error(), &huma.ErrorDetail{Location: "body." + inv.Field, Message: inv.Message})
	case errors.As(err, &ill):
		return huma.Error409Conflict(ill.Error())
	case errors.As(err, &conflict):
		return huma.Error409Conflict(conflict.Error())
	case errors.As(err, &inUse):
		return huma.Error409Conflict(inUse.Error())
	case errors.As(err, &forb):
		return huma.Error403Forbidden(forb.Error())
	case errors.Is(err, store.ErrBadQuery):
		return huma.Error422UnprocessableEntity(strings.TrimPrefix(err.Error(), store.ErrBadQuery.Error()+": "))
	case errors.Is(err, store.ErrBadCursor):
		return huma.Error400BadRequest("cursor: not a cursor this server issued; start again without one",
			&huma.ErrorDetail{Location: "query.cursor", Message: "invalid pagination cursor"})
	case errors.Is(err, store.ErrStale):
		return huma.Error412PreconditionFailed("the resource changed since you read it; read it again and retry")
	case errors.Is(err, store.ErrNotFound):
		return huma.Error404NotFound(notFoundDetail(err))
	case errors.Is(err, context.Canceled):
		return huma.NewError(499, "request cancelled")
	}
	logFrom(ctx).Error("request failed", "err", err)
	return huma.Error500InternalServerError("internal error; the server log has the details (request id " + requestID(ctx) + ")")
}

func notFoundDetail(err error) string {
	msg := err.Error()
	if msg == store.ErrNotFound.Error() {
		return "not found"
	}
	return strings.TrimPrefix(msg, store.ErrNotFound.Error()+": ")
}

// notFoundAs names the missing resource in a bare not-found error.
func notFoundAs(err error, what, id string) error {
	if err != nil && errors.Is(err, store.ErrNotFound) && err.Error() == store.ErrNotFound.Error() {
		return huma.Error404NotFound(what + " " + id + " not found")
	}
	return err
}
