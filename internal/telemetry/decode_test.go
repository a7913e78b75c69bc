package telemetry

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type want struct {
	metric string
	at     time.Time
	v      any
}

func check(t *testing.T, got []Point, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%d points, want %d: %+v", len(got), len(wants), got)
	}
	byName := map[string]Point{}
	for _, p := range got {
		byName[p.Metric] = p
	}
	for _, w := range wants {
		p, ok := byName[w.metric]
		if !ok {
			t.Fatalf("no point %q in %+v", w.metric, got)
		}
		tp := model.TelemetryPoint{Kind: p.Kind, Num: p.Num, Text: p.Text}
		if v := tp.Value(); v != w.v {
			t.Fatalf("%s = %#v (%s), want %#v", w.metric, v, p.Kind, w.v)
		}
		if !p.Time.Equal(w.at) {
			t.Fatalf("%s at %v, want %v", w.metric, p.Time, w.at)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 500000000, time.UTC)
	cases := []struct {
		name    string
		payload string
		want    []want
	}{
		{"numbers strings booleans", `{"temp": 21.5, "door": "closed", "on": true, "off": false, "n": -3e2}`,
			[]want{{"temp", now, 21.5}, {"door", now, "closed"}, {"on", now, true}, {"off", now, false}, {"n", now, -300.0}}},
		{"ts in seconds", `{"ts": 1767225600.5, "temp": 1}`, []want{{"temp", ts, 1.0}}},
		{"ts as RFC 3339", `{"ts": "2026-01-01T00:00:00.5Z", "temp": 1}`, []want{{"temp", ts, 1.0}}},
		{"names with every allowed character", `{"a-b:c.d/e_f9": 1, "9x": 2}`, []want{{"a-b:c.d/e_f9", now, 1.0}, {"9x", now, 2.0}}},
		{"white space around", " \n{\"x\":1}\n ", []want{{"x", now, 1.0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.payload), false, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			check(t, got, c.want)
		})
	}
}

func TestDecodeSenML(t *testing.T) {
	abs := time.Unix(1767225600, 0).UTC()
	cases := []struct {
		name    string
		payload string
		want    []want
	}{
		{"RFC 8428 example with base fields",
			`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1767225600,"bu":"Cel","n":"temp","v":23.1},{"n":"hum","u":"%RH","v":50,"t":10}]`,
			[]want{{"urn:dev:ow:10e2073a01080063:temp", abs, 23.1}, {"urn:dev:ow:10e2073a01080063:hum", abs.Add(10 * time.Second), 50.0}}},
		{"relative times", `[{"n":"a","v":1,"t":-60},{"n":"b","v":2}]`,
			[]want{{"a", now.Add(-time.Minute), 1.0}, {"b", now, 2.0}}},
		{"base value and sum", `[{"bn":"m/","bv":10,"n":"v","v":1},{"n":"s","s":7,"bs":3}]`,
			[]want{{"m/v", now, 11.0}, {"m/s", now, 10.0}}},
		{"string, boolean and data values", `[{"n":"s","vs":"hi"},{"n":"b","vb":true},{"n":"d","vd":"aGVsbG8"}]`,
			[]want{{"s", now, "hi"}, {"b", now, true}, {"d", now, "aGVsbG8"}}},
		{"a record of base fields only", `[{"bn":"x/","bver":10},{"n":"y","v":1}]`, []want{{"x/y", now, 1.0}}},
		{"extension fields are ignored", `[{"n":"y","v":1,"ext":"z"}]`, []want{{"y", now, 1.0}}},
		{"empty string value", `[{"n":"s","vs":""}]`, []want{{"s", now, ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, senml := range []bool{true, false} { // an array on the telemetry topic is SenML too
				got, err := Decode([]byte(c.payload), senml, now)
				if err != nil {
					t.Fatalf("Decode(senml=%v): %v", senml, err)
				}
				check(t, got, c.want)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen+1)
	many := "{" + strings.Repeat(`"m`, 0)
	for i := range MaxPoints + 1 {
		if i > 0 {
			many += ","
		}
		many += `"m` + strings.Repeat("0", 0) + string(rune('a'+i%26)) + "_" + itoa(i) + `":1`
	}
	many += "}"
	cases := []struct {
		name, payload string
		senml         bool
		reason        string
	}{
		{"empty", ``, false, "empty"},
		{"not JSON", `{"temp": 21.5`, false, "not a JSON object"},
		{"trailing data", `{"a":1} {"b":2}`, false, "after the JSON value"},
		{"trailing garbage", `{"a":1}x`, false, "after the JSON value"},
		{"trailing comma", `{"a":1,}`, false, "not a JSON object"},
		{"a metric twice", `{"a":1,"b":2,"a":3}`, false, `"a" appears twice`},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false, "UTF-8"},
		{"an array of numbers", `[1, 2]`, false, "SenML pack"},
		{"a string", `"hello"`, false, "not a JSON object"},
		{"null", `null`, false, "null"},
		{"no metrics", `{"ts": 1767225600}`, false, "no metrics"},
		{"nested object", `{"a": {"b": 1}}`, false, "not an object or array"},
		{"array value", `{"a": [1]}`, false, "not an object or array"},
		{"null value", `{"a": null}`, false, "not null"},
		{"bad name", `{"a b": 1}`, false, "only letters"},
		{"name starting with _", `{"_a": 1}`, false, "start with a letter or digit"},
		{"long name", `{"` + long + `": 1}`, false, "at most 128"},
		{"too many metrics", many, false, "at most 256"},
		{"huge number", `{"a": 1e999}`, false, "metric \"a\""},
		{"bad ts", `{"ts": "yesterday", "a": 1}`, false, "RFC 3339"},
		{"ts in the future", `{"ts": 1893456000, "a": 1}`, false, "ahead"},
		{"ts before 2000", `{"ts": 900000000, "a": 1}`, false, "before 2000"},
		{"long string", `{"a": "` + strings.Repeat("y", MaxStringLen+1) + `"}`, false, "at most 1024"},
		{"SenML object", `{"n":"a","v":1}`, true, "SenML pack"},
		{"SenML empty", `[]`, true, "empty"},
		{"SenML two values", `[{"n":"a","v":1,"vs":"x"}]`, true, "more than one"},
		{"SenML no value", `[{"n":"a"}]`, true, "no value"},
		{"SenML must understand", `[{"n":"a","v":1,"foo_":2}]`, true, "must be understood"},
		{"SenML version", `[{"bver":11,"n":"a","v":1}]`, true, "version"},
		{"SenML string as number", `[{"n":"a","v":"1"}]`, true, "must be a number"},
		{"SenML number as name", `[{"n":5,"v":1}]`, true, "must be a string"},
		{"SenML null name", `[{"n":null,"v":1}]`, true, "must be a string"},
		{"SenML bool as string", `[{"n":"a","vb":"true"}]`, true, "true or false"},
		{"SenML bad data", `[{"n":"a","vd":"***"}]`, true, "base64url"},
		{"SenML missing name", `[{"v":1}]`, true, "name is empty"},
		{"SenML bad name", `[{"n":"a b","v":1}]`, true, "only letters"},
		{"SenML null record", `[null]`, true, "null"},
		{"SenML only base records", `[{"bn":"a"}]`, true, "no values"},
		{"SenML absolute time before 2000", `[{"n":"a","v":1,"t":300000000}]`, true, "before 2000"},
		{"SenML field twice", `[{"n":"a","v":1,"v":2}]`, true, `"v" appears twice`},
		{"SenML record not an object", `[{"n":"a","v":1}, 5]`, true, "record 1 is a JSON number"},
		{"SenML trailing data", `[{"n":"a","v":1}] x`, true, "after the JSON value"},
		{"SenML unclosed", `[{"n":"a","v":1}`, true, "unexpected end of input"},
		{"SenML huge sum", `[{"n":"a","s":1e308,"bs":1e308}]`, true, "out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.payload), c.senml, now)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode gave %+v, %v; want a DecodeError", got, err)
			}
			if got != nil {
				t.Fatalf("a refused payload returned points: %+v", got)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("reason %q does not say %q", err, c.reason)
			}
		})
	}
}

// BenchmarkDecodeSenML decodes a pack of three records with base fields.
func BenchmarkDecodeSenML(b *testing.B) {
	payload := []byte(`[{"bn":"boiler/","bt":1767225600,"bu":"Cel","n":"flow","v":61.2},{"n":"return","v":44.0,"t":10},{"n":"pump","vb":true}]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(payload, true, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeObject decodes the message of bench/broker's fan-in.
func BenchmarkDecodeObject(b *testing.B) {
	payload := []byte(`{"temperature":21.5,"seq":1234}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(payload, false, now); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

// validPoints checks the invariants of whatever Decode accepts.
func validPoints(t *testing.T, pts []Point) {
	if len(pts) == 0 || len(pts) > MaxPoints {
		t.Fatalf("accepted %d points", len(pts))
	}
	for _, p := range pts {
		if err := checkName(p.Metric); err != nil {
			t.Fatalf("accepted a bad name: %v", err)
		}
		if p.Time.Before(minTime) || p.Time.After(now.Add(maxAhead)) {
			t.Fatalf("accepted time %v", p.Time)
		}
		switch p.Kind {
		case model.KindNumber:
			if math.IsNaN(p.Num) || math.IsInf(p.Num, 0) {
				t.Fatalf("accepted number %v", p.Num)
			}
		case model.KindBool:
			if p.Num != 0 && p.Num != 1 {
				t.Fatalf("boolean stored as %v", p.Num)
			}
		case model.KindString, model.KindData:
			if len(p.Text) > MaxStringLen {
				t.Fatalf("accepted %d bytes of text", len(p.Text))
			}
		default:
			t.Fatalf("unknown kind %q", p.Kind)
		}
	}
}

func fuzzDecode(f *testing.F, senml bool, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pts, err := Decode(b, senml, now)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || pts != nil {
				t.Fatalf("error %v (%T) with %d points", err, err, len(pts))
			}
			return
		}
		validPoints(t, pts)
	})
}

func FuzzDecodeSenML(f *testing.F) {
	fuzzDecode(f, true, []string{
		`[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,"bu":"%RH","v":20.0},{"n":"temp","u":"Cel","v":23.1,"t":60}]`,
		`[{"n":"a","vs":"x"},{"n":"b","vb":false},{"n":"c","vd":"AAE"},{"n":"d","s":1}]`,
		`[{"bver":10,"bn":"x/","bv":1,"bs":2},{"n":"y","v":-1,"t":-1e5}]`,
		`[{"n":"a","v":1,"ut":10,"x":{"nested":[1,2]}}]`,
	})
}

func FuzzDecodeJSON(f *testing.F) {
	fuzzDecode(f, false, []string{
		`{"temp":21.5,"door":"closed","heating":true}`,
		`{"ts":1767225600.25,"a:b/c":1e-3}`,
		`{"ts":"2026-01-01T00:00:00Z","x":"` + strings.Repeat("y", 64) + `"}`,
		`[{"n":"a","v":1}]`,
	})
}
