package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/sim"
	"github.com/steward-iot/steward/internal/store"
)

// Demo fleet of `steward server --dev --demo`: a tenant, a product and
// simulated devices of mixed behaviours running in-process, so that a
// first look at the dashboard shows a living fleet.
const (
	demoTenant  = "Demo fleet"
	demoDevices = 1000
)

// startDemo finds or creates the demo tenant and product and starts the
// simulated fleet; stop ends it and waits for it.
func startDemo(ctx context.Context, srv *platform.Server, log *slog.Logger, progress io.Writer) (stop func(), err error) {
	admin := &authz.Principal{KeyID: "demo", Role: model.RolePlatformAdmin}
	ten, prod, err := demoTenantProduct(ctx, srv, admin)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	mqtt := srv.MQTTAddr(broker.ListenerCert)
	if mqtt == "" || srv.ESTURL() == "" {
		return nil, fmt.Errorf("demo: needs the MQTT certificate listener and the enrollment listener")
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Identity.CA().Anchor())
	tokens := func(ctx context.Context, serial string) (string, error) {
		tok, _, err := srv.Identity.CreateBootstrapToken(ctx, admin, ten.ID, identity.BootstrapInput{ProductID: prod.ID, Name: "demo " + serial})
		return tok, err
	}
	s, err := sim.New(sim.Config{Devices: demoDevices, ESTURL: srv.ESTURL(), Tokens: tokens, MQTT: []string{mqtt}, Roots: roots,
		SerialPrefix: "DEMO", Interval: 10 * time.Second, ConnectRate: 200, EnrollConcurrency: 8,
		// One compromised device, a few flaky and outdated ones.
		Mix:          sim.Mix{sim.WellBehaved: 899, sim.Flaky: 60, sim.Outdated: 40, sim.Compromised: 1},
		IdentityFile: filepath.Join(srv.Config.DataDir, "demo", "identities.json"),
		Progress:     progress, ProgressEvery: 30 * time.Second, Seed: 1, Log: log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil {
			log.Error("demo fleet stopped", "err", err)
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// demoTenantProduct returns the demo tenant and its product, made on the
// first start.
func demoTenantProduct(ctx context.Context, srv *platform.Server, admin *authz.Principal) (*model.Tenant, *model.Product, error) {
	var ten *model.Tenant
	for cursor := ""; ten == nil; {
		items, next, err := srv.Store.ListTenants(ctx, store.ListOptions{Limit: 100, Cursor: cursor})
		if err != nil {
			return nil, nil, err
		}
		for i := range items {
			if items[i].Name == demoTenant {
				ten = &items[i]
				break
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if ten == nil {
		t, err := srv.Registry.CreateTenant(ctx, admin, demoTenant, model.TenantEnterprise)
		if err != nil {
			return nil, nil, err
		}
		ten = t
	}
	prods, _, err := srv.Store.ListProducts(ctx, ten.ID, store.ListOptions{Limit: 1})
	if err != nil {
		return nil, nil, err
	}
	if len(prods) > 0 {
		return ten, &prods[0], nil
	}
	p, err := srv.Registry.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Steward Demo", Model: "Sensor S1"})
	return ten, p, err
}
