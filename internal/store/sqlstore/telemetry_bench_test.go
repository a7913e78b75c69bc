package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// BenchmarkWriteTelemetry measures the SQLite ingestion rate: batches of
// 2000 points from 100 devices, as the ingester writes them.
func BenchmarkWriteTelemetry(b *testing.B) {
	db, err := sqlstore.Open(b.Context(), "sqlite:"+b.TempDir()+"/x.db", sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	base := time.Now()
	const batch = 2000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pts := make([]model.TelemetryPoint, batch)
		for j := range pts {
			pts[j] = model.TelemetryPoint{TenantID: "ten_01abc", DeviceID: fmt.Sprintf("dev_01m8bhvh0g2x60qcar1vr%05d", j%100),
				Metric: "temperature", Time: base.Add(time.Duration(i*batch+j) * time.Microsecond), Kind: model.KindNumber, Num: 21.5}
		}
		if err := db.WriteTelemetry(b.Context(), pts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkWriteTelemetryColdCache measures a node's first batch after it
// started: 3,000 series (1,000 devices, 3 metrics) that exist in the
// store but not in the new handle's series cache, one point each.
func BenchmarkWriteTelemetryColdCache(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			url := "sqlite:" + b.TempDir() + "/x.db"
			if backend == "postgres" {
				url = pgtest.URL(b)
			}
			const devices, metrics = 1000, 3
			base := time.Now()
			batch := func(round int) []model.TelemetryPoint {
				pts := make([]model.TelemetryPoint, 0, devices*metrics)
				for d := range devices {
					for m := range metrics {
						pts = append(pts, model.TelemetryPoint{TenantID: "ten_01abc", DeviceID: fmt.Sprintf("dev_%05d", d),
							Metric: fmt.Sprintf("m%d", m), Time: base.Add(time.Duration(round) * time.Second), Kind: model.KindNumber, Num: 1})
					}
				}
				return pts
			}
			open := func() *sqlstore.DB {
				db, err := sqlstore.Open(b.Context(), url, sqlstore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				return db
			}
			db := open()
			if err := db.WriteTelemetry(b.Context(), batch(0)); err != nil {
				b.Fatal(err)
			}
			db.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				db := open() // a new handle: an empty series cache
				pts := batch(i + 1)
				b.StartTimer()
				if err := db.WriteTelemetry(b.Context(), pts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				db.Close()
			}
		})
	}
}
