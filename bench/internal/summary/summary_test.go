package summary

import (
	"math"
	"strings"
	"testing"
)

func TestResult(t *testing.T) {
	ratio := func(op string, b float64) *Target { return &Target{Op: op, Bound: b, Ratio: true} }
	abs := func(op string, b float64) *Target { return &Target{Op: op, Bound: b} }
	for _, tc := range []struct {
		name string
		row  Row
		want string
	}{
		{"no target", Row{Value: 5}, "–"},
		{"higher is better, met", Row{Value: 95, Peer: "p", PeerValue: 100, Target: ratio(">=", 0.9)}, "PASS"},
		{"higher is better, bound itself", Row{Value: 90, Peer: "p", PeerValue: 100, Target: ratio(">=", 0.9)}, "PASS"},
		{"higher is better, missed", Row{Value: 89, Peer: "p", PeerValue: 100, Target: ratio(">=", 0.9)}, "MISS"},
		{"lower is better, met", Row{Value: 19, Peer: "p", PeerValue: 20, Target: ratio("<=", 1)}, "PASS"},
		{"lower is better, missed", Row{Value: 55, Peer: "p", PeerValue: 20, Target: ratio("<=", 1)}, "MISS"},
		{"ratio target, no peer figure", Row{Value: 55, Peer: "p", Target: ratio(">=", 1)}, "–"},
		{"absolute, under", Row{Value: 99.9, Target: abs("<", 100)}, "PASS"},
		{"absolute, at the bound", Row{Value: 100, Target: abs("<", 100)}, "MISS"},
		{"absolute, above", Row{Value: 3, Target: abs(">", 2)}, "PASS"},
	} {
		if got := tc.row.Result(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestLineRoundTrip(t *testing.T) {
	rows := []Row{
		{Benchmark: "broker", Measurement: "fan-in QoS 0 (20 publishers)", Value: 34593.2, Unit: "msg/s", Peer: "Mosquitto",
			PeerValue: 185196, Target: &Target{Op: ">=", Bound: 1, Ratio: true}},
		{Benchmark: "ota", Measurement: `CreateCampaign, tag "prod" + firmware < 2.0.0`, Value: 1.59, Unit: "s",
			Target: &Target{Op: "<", Bound: 10}},
		{Benchmark: "ingest", Measurement: "points | sqlite", Value: 39269, Unit: "points/s"},
	}
	var b strings.Builder
	b.WriteString("| a table |\n| --- |\n| row |\n")
	Print(&b, rows...)
	out := b.String()
	if !strings.Contains(out, "| row |\n\n"+Prefix) {
		t.Fatalf("no blank line between the table and the summary lines:\n%s", out)
	}
	if !strings.Contains(out, `"op":"<"`) {
		t.Errorf("operators escaped:\n%s", out)
	}
	got, errs := Collect(out)
	if len(errs) != 0 || len(got) != len(rows) {
		t.Fatalf("collected %d rows, errors %v", len(got), errs)
	}
	for i := range rows {
		if got[i].Line() != rows[i].Line() {
			t.Errorf("row %d: %s, want %s", i, got[i].Line(), rows[i].Line())
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"| a | b |", "not a summary line"},
		{Prefix + "{", "unexpected EOF"},
		{Prefix + `{"benchmark":"x","measurement":"m","value":1,"colour":"red"}`, "unknown field"},
		{Prefix + `{"benchmark":"x","value":1}`, "benchmark and measurement are required"},
		{Prefix + `{"benchmark":"x","measurement":"m","value":1,"target":{"op":"~","bound":1}}`, "target operator"},
		{Prefix + `{"benchmark":"x","measurement":"m","value":1,"target":{"op":">=","bound":1,"ratio":true}}`, "needs a peer"},
	} {
		_, err := Parse(tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.line, err, tc.want)
		}
	}
	rows, errs := Collect("text\n" + Prefix + "{\n" + Prefix + `{"benchmark":"x","measurement":"m","value":1}` + "\n")
	if len(rows) != 1 || len(errs) != 1 {
		t.Errorf("collect: %d rows, %d errors", len(rows), len(errs))
	}
	// A figure that cannot be a figure is left out, and said so.
	var b strings.Builder
	Print(&b, Row{Benchmark: "x", Measurement: "m", Value: math.NaN()}, Row{Benchmark: "x", Measurement: "n", Value: 1})
	rows, errs = Collect(b.String())
	if len(rows) != 1 || len(errs) != 0 || !strings.Contains(b.String(), `summary row "m" left out: figures must be finite`) {
		t.Errorf("NaN row: %d rows, %v:\n%s", len(rows), errs, b.String())
	}
}

func TestTable(t *testing.T) {
	got := Table([]Row{
		{Benchmark: "broker", Measurement: "RSS per idle TLS connection at 2000", Value: 55.04, Unit: "KiB", Peer: "Mosquitto",
			PeerValue: 19.9, Target: &Target{Op: "<=", Bound: 1, Ratio: true}},
		{Benchmark: "broker", Measurement: "TLS connection setup", Value: 394, Unit: "conn/s", Peer: "Mosquitto", PeerValue: 440},
		{Benchmark: "fleetquery", Measurement: "a | b", Value: 0.98, Unit: "ms", Target: &Target{Op: "<", Bound: 100}},
		{Benchmark: "ota", Measurement: "download", Value: 1034, Unit: "MiB/s", Peer: "plain ServeContent", PeerValue: 1052,
			Target: &Target{Op: ">=", Bound: 0.9, Ratio: true}},
		{Benchmark: "ota", Measurement: "campaign", Value: 0.0065777, Unit: "s", Target: &Target{Op: "<", Bound: 10}},
	})
	want := `| benchmark | measurement | ours | peer | ratio | target | result |
| --- | --- | ---: | ---: | ---: | --- | --- |
| broker | RSS per idle TLS connection at 2000 | 55.0 KiB | 19.9 KiB (Mosquitto) | 2.77× | ≤ 1.0× Mosquitto | MISS |
| broker | TLS connection setup | 394 conn/s | 440 conn/s (Mosquitto) | 0.90× | – | – |
| fleetquery | a \| b | 0.98 ms | – | – | < 100 ms | PASS |
| ota | download | 1034 MiB/s | 1052 MiB/s (plain ServeContent) | 0.98× | ≥ 0.9× plain ServeContent | PASS |
| ota | campaign | 0.0066 s | – | – | < 10 s | PASS |
`
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
