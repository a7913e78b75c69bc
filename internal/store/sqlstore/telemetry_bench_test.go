package sqlstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store/sqlstore"
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
