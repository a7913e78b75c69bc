package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

type healthOut struct {
	Body struct {
		Status  string `json:"status" example:"ok"`
		Version string `json:"version,omitempty"`
		Store   string `json:"store,omitempty"`
	}
}

func (a *API) routesHealth() {
	reg(a, huma.Operation{OperationID: "healthz", Method: http.MethodGet, Path: "/healthz",
		Summary: "Liveness: the process answers"}, access{public: true},
		func(ctx context.Context, _ *struct{}) (*healthOut, error) {
			out := &healthOut{}
			out.Body.Status, out.Body.Version = "ok", a.Version
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "readyz", Method: http.MethodGet, Path: "/readyz",
		Summary: "Readiness: the database and the event bus answer"}, access{public: true},
		func(ctx context.Context, _ *struct{}) (*healthOut, error) {
			if a.Ready != nil {
				if err := a.Ready(ctx); err != nil {
					return nil, huma.Error503ServiceUnavailable("not ready: " + err.Error())
				}
			}
			out := &healthOut{}
			out.Body.Status, out.Body.Version, out.Body.Store = "ready", a.Version, a.Store.Backend()
			return out, nil
		})
}
