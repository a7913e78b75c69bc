package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

type productBody struct {
	Vendor           string     `json:"vendor" minLength:"1" maxLength:"128"`
	Model            string     `json:"model" minLength:"1" maxLength:"128"`
	HardwareRevision string     `json:"hardware_revision,omitempty" maxLength:"64"`
	EndOfSupport     *time.Time `json:"end_of_support,omitempty" doc:"When the vendor stops shipping updates (RFC 3339)."`
	MUDURL           string     `json:"mud_url,omitempty" maxLength:"2048" doc:"RFC 8520 MUD file URL (https)."`
}

func (b *productBody) input() registry.ProductInput {
	return registry.ProductInput{Vendor: b.Vendor, Model: b.Model, HardwareRevision: b.HardwareRevision,
		EndOfSupport: b.EndOfSupport, MUDURL: b.MUDURL}
}

type productIn struct{ Body productBody }

type productIDIn struct {
	ProductID string `path:"productID" maxLength:"64"`
}

type productUpdateIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	Body      productBody
}

type productOut struct{ Body *model.Product }

type productList struct {
	Body struct {
		Items      []model.Product `json:"items"`
		NextCursor string          `json:"next_cursor,omitempty"`
	}
}

func (a *API) routesProducts() {
	reg(a, huma.Operation{OperationID: "createProduct", Method: http.MethodPost, Path: Prefix + "/products",
		Summary: "Define a product (device model)", DefaultStatus: http.StatusCreated},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *productIn) (*productOut, error) {
			p, err := a.Registry.CreateProduct(ctx, authz.From(ctx), tenantOf(ctx), in.Body.input())
			if err != nil {
				return nil, err
			}
			return &productOut{p}, nil
		})
	reg(a, huma.Operation{OperationID: "listProducts", Method: http.MethodGet, Path: Prefix + "/products",
		Summary: "List products"}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *PageIn) (*productList, error) {
			items, next, err := a.Store.ListProducts(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &productList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getProduct", Method: http.MethodGet, Path: Prefix + "/products/{productID}",
		Summary: "Get a product"}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *productIDIn) (*productOut, error) {
			p, err := a.Store.GetProduct(ctx, tenantOf(ctx), in.ProductID)
			if err != nil {
				return nil, notFoundAs(err, "product", in.ProductID)
			}
			return &productOut{p}, nil
		})
	reg(a, huma.Operation{OperationID: "updateProduct", Method: http.MethodPut, Path: Prefix + "/products/{productID}",
		Summary: "Replace a product's fields"}, access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *productUpdateIn) (*productOut, error) {
			p, err := a.Registry.UpdateProduct(ctx, authz.From(ctx), tenantOf(ctx), in.ProductID, in.Body.input())
			if err != nil {
				return nil, notFoundAs(err, "product", in.ProductID)
			}
			return &productOut{p}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteProduct", Method: http.MethodDelete, Path: Prefix + "/products/{productID}",
		Summary: "Delete a product no device uses", DefaultStatus: http.StatusNoContent},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *productIDIn) (*struct{}, error) {
			return nil, notFoundAs(a.Registry.DeleteProduct(ctx, authz.From(ctx), tenantOf(ctx), in.ProductID), "product", in.ProductID)
		})
}
