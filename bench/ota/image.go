package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/registry"
)

// imagePlatform is a running platform holding one uploaded image of
// random bytes, for the download measurements.
type imagePlatform struct {
	srv      *platform.Server
	key      string // the platform admin's API key
	tenantID string
	artID    string
	image    string // the image file on disk
	digest   string // its SHA-256, hex
	size     int64
	client   *http.Client
}

// startImagePlatform starts a platform in dir (ota.storage_url set when
// storageURL is not empty) and uploads an image of o.SizeMiB, its digest
// announced. stop shuts the platform down.
func startImagePlatform(ctx context.Context, o options, dir, storageURL string) (p *imagePlatform, stop func(), err error) {
	cfg := config.Default()
	cfg.Dev = !o.TLS
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen, cfg.EST.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTA.StorageURL = storageURL
	srv, err := platform.New(ctx, cfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if err := srv.Start(ctx); err != nil {
		return nil, nil, err
	}
	keyB, err := os.ReadFile(filepath.Join(cfg.DataDir, platform.AdminKeyFile))
	if err != nil {
		return nil, nil, err
	}
	admin := &authz.Principal{KeyID: "bench", Role: model.RolePlatformAdmin}
	ten, err := srv.Registry.CreateTenant(ctx, admin, "bench", model.TenantEnterprise)
	if err != nil {
		return nil, nil, err
	}
	prod, err := srv.Registry.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Bench", Model: "B1"})
	if err != nil {
		return nil, nil, err
	}

	p = &imagePlatform{srv: srv, key: strings.TrimSpace(string(keyB)), tenantID: ten.ID,
		image: filepath.Join(dir, "image.bin"), size: int64(o.SizeMiB) << 20,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableCompression: true}}}
	f, err := os.Create(p.image)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.Reader, p.size)
	f.Close()
	if err != nil {
		return nil, nil, err
	}
	p.digest = hex.EncodeToString(h.Sum(nil))
	art, err := srv.OTA.CreateArtifact(ctx, "bench", ten.ID, ota.ArtifactInput{Name: "image.bin", Version: "1.0.0",
		ProductIDs: []string{prod.ID}, HardwareIDs: []string{"bench"}})
	if err != nil {
		return nil, nil, err
	}
	p.artID = art.ID
	if f, err = os.Open(p.image); err != nil {
		return nil, nil, err
	}
	srv.OTA.MaxArtifactBytes = p.size
	_, err = srv.OTA.Upload(ctx, "bench", ten.ID, art.ID, f, p.digest)
	f.Close()
	if err != nil {
		return nil, nil, err
	}
	return p, stop, nil
}

// scheme is the platform's: https, or http in dev mode.
func (p *imagePlatform) scheme() string {
	if strings.HasPrefix(p.srv.URL(), "https:") {
		return "https"
	}
	return "http"
}

// download fetches url whole and returns MiB/s.
func (p *imagePlatform) download(ctx context.Context, url string, hdr map[string]string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	res, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, res.Status)
	}
	return rate(res.Body, p.size, start)
}

// viaPlatform times the platform's download route for the image.
func (p *imagePlatform) viaPlatform(ctx context.Context) (float64, error) {
	return p.download(ctx, p.srv.URL()+"/api/v1/artifacts/"+p.artID+"/content",
		map[string]string{"Authorization": "Bearer " + p.key, "X-Steward-Tenant": p.tenantID})
}

// rate reads body to the end and returns MiB/s since start.
func rate(body io.Reader, size int64, start time.Time) (float64, error) {
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("got %d bytes of %d", n, size)
	}
	return float64(n) / (1 << 20) / time.Since(start).Seconds(), nil
}

// alternate times a and b in turns, rounds times each after one untimed
// warm-up of both, and returns their medians.
func alternate(rounds int, a, b func() (float64, error)) (ma, mb float64, err error) {
	var as, bs []float64
	for i := -1; i < rounds; i++ {
		x, err := a()
		if err != nil {
			return 0, 0, err
		}
		y, err := b()
		if err != nil {
			return 0, 0, err
		}
		if i >= 0 {
			as, bs = append(as, x), append(bs, y)
		}
	}
	return median(as), median(bs), nil
}
