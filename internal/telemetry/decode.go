// Package telemetry turns device messages into measurements and keeps
// them: decoding (a JSON object of metrics or a SenML pack, RFC 8428),
// batched durable writes, last values, range queries with downsampling and
// per-tenant retention.
package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/steward-iot/steward/internal/model"
)

// Limits of one message.
const (
	MaxPoints     = 256  // metrics of one object or records of one pack
	MaxNameLen    = 128  // bytes of a metric name (after the SenML base name)
	MaxStringLen  = 1024 // bytes of a string or data value
	senmlVersion  = 10   // the SenML version this decoder understands
	relativeLimit = 1 << 28
)

var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	// maxAhead is how far in the future a device clock may be.
	maxAhead = 24 * time.Hour
)

// DecodeError says why a payload was refused; the message is meant for the
// device (it goes into the reason string and the error report).
type DecodeError struct{ Msg string }

func (e *DecodeError) Error() string { return e.Msg }

func bad(format string, a ...any) error { return &DecodeError{Msg: fmt.Sprintf(format, a...)} }

// Point is one decoded measurement. The decoder leaves TenantID and
// DeviceID empty for the caller to fill in place: one slice per message
// from the payload to the store.
type Point = model.TelemetryPoint

// Decode reads a telemetry payload: a SenML pack when senml is set or the
// payload is a JSON array, otherwise a JSON object of metrics. now stands
// for the arrival time. On error nothing is returned: a message is taken
// whole or not at all.
func Decode(payload []byte, senml bool, now time.Time) ([]Point, error) {
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, bad("payload is empty")
	}
	if senml || trimmed[0] == '[' {
		return DecodeSenML(payload, now)
	}
	return DecodeObject(payload, now)
}

// DecodeObject reads {"ts": …, "metric": value, …}. It is on every
// telemetry message's path, so it reads the payload as a stream of tokens
// (no map, no reflection). A metric named twice is refused: which of the
// two values was meant cannot be known (RFC 8259 §4, RFC 7493 §2.3).
func DecodeObject(payload []byte, now time.Time) ([]Point, error) {
	pd := getDecoder(payload)
	defer putDecoder(pd)
	d := pd.Decoder
	notObject := func(err error) error {
		return bad("payload is not a JSON object of metrics: %s", tokenReason(err))
	}
	tok, err := d.ReadToken()
	if err != nil {
		return nil, notObject(err)
	}
	switch k := tok.Kind(); k {
	case '{':
	case 'n':
		return nil, bad("payload is not a JSON object of metrics: null")
	default:
		return nil, bad("payload is not a JSON object of metrics: found a JSON %s", kindName(k))
	}
	out := make([]Point, 0, 4)
	at := now
	err = eachMember(d, notObject, func(name string, val json.RawMessage) error {
		if name == "ts" {
			var err error
			at, err = parseTS(val, now)
			return err
		}
		if len(out) == MaxPoints {
			return bad("payload holds more than %d metrics; at most %d per message", MaxPoints, MaxPoints)
		}
		if err := checkName(name); err != nil {
			return err
		}
		p := Point{Metric: name}
		if err := scalar(val, &p, name); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !atEnd(d) {
		return nil, bad("payload is not a JSON object of metrics: unexpected data after the JSON value")
	}
	if len(out) == 0 {
		return nil, bad("payload holds no metrics")
	}
	for i := range out {
		out[i].Time = at
	}
	return out, nil
}

// pooledDecoder is a tokenizer with the buffer it reads: jsontext reads a
// *bytes.Buffer in place, without copying, and pooling the buffer with it
// saves an allocation per message.
type pooledDecoder struct {
	*jsontext.Decoder
	buf bytes.Buffer
}

var (
	decoders    = sync.Pool{New: func() any { return &pooledDecoder{Decoder: jsontext.NewDecoder(emptyReader)} }}
	emptyReader = bytes.NewReader(nil)
)

// getDecoder gives a pooled tokenizer reading payload (without copying it).
func getDecoder(payload []byte) *pooledDecoder {
	d := decoders.Get().(*pooledDecoder)
	d.buf = *bytes.NewBuffer(payload)
	d.Reset(&d.buf)
	return d
}

func putDecoder(d *pooledDecoder) {
	d.Reset(emptyReader) // drop the payload before pooling
	d.buf = bytes.Buffer{}
	decoders.Put(d)
}

// eachMember reads the members of the object whose '{' was just read, up
// to its '}', calling fn with each name and raw (checked) value. The value
// is only valid during the call. A syntax error goes through syntax.
func eachMember(d *jsontext.Decoder, syntax func(error) error, fn func(name string, val json.RawMessage) error) error {
	for {
		tok, err := d.ReadToken()
		if err != nil {
			return syntax(err)
		}
		if tok.Kind() == '}' {
			return nil
		}
		name := tok.String()
		val, err := d.ReadValue()
		if err != nil {
			return syntax(err)
		}
		if err := fn(name, json.RawMessage(val)); err != nil {
			return err
		}
	}
}

// atEnd reports whether nothing but white space follows the value read.
func atEnd(d *jsontext.Decoder) bool {
	_, err := d.ReadToken()
	return err == io.EOF
}

// tokenReason words a tokenizer error for the device.
func tokenReason(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		if errors.Is(se.Err, jsontext.ErrDuplicateName) {
			return fmt.Sprintf("%q appears twice", se.JSONPointer.LastToken())
		}
		if errors.Is(se.Err, io.ErrUnexpectedEOF) {
			return "unexpected end of input"
		}
		return fmt.Sprintf("%v at byte %d", se.Err, se.ByteOffset)
	}
	return err.Error()
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case '[':
		return "array"
	}
	return "value"
}

// scalar reads a number, string or boolean into p.
func scalar(raw json.RawMessage, p *Point, name string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return bad("metric %q has no value", name)
	}
	switch raw[0] {
	case '"':
		var s string
		if err := str(raw, &s); err != nil {
			return bad("metric %q: %v", name, err)
		}
		if len(s) > MaxStringLen {
			return bad("metric %q: string of %d bytes; at most %d", name, len(s), MaxStringLen)
		}
		p.Kind, p.Text = model.KindString, s
	case 't', 'f':
		p.Kind, p.Num = model.KindBool, 0
		switch string(raw) {
		case "true":
			p.Num = 1
		case "false":
		default:
			return bad("metric %q: must be true or false", name)
		}
	case '{', '[':
		return bad("metric %q: value must be a number, a string or a boolean, not an object or array", name)
	case 'n':
		return bad("metric %q: value must be a number, a string or a boolean, not null", name)
	default:
		f, err := number(raw)
		if err != nil {
			return bad("metric %q: %v", name, err)
		}
		p.Kind, p.Num = model.KindNumber, f
	}
	return nil
}

func number(raw json.RawMessage) (float64, error) {
	var f float64
	if len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		// A JSON number (the tokenizer checked the grammar, which is a
		// subset of ParseFloat's): no reflection on the hot path.
		var err error
		if f, err = strconv.ParseFloat(string(raw), 64); err != nil {
			return 0, errors.New("number out of range")
		}
	} else if err := json.Unmarshal(raw, &f); err != nil {
		return 0, errors.New(jsonReason(err))
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, errors.New("number out of range")
	}
	return f, nil
}

// parseTS reads Unix seconds (a number) or an RFC 3339 string.
func parseTS(raw json.RawMessage, now time.Time) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	var t time.Time
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := str(raw, &s); err != nil {
			return t, bad("ts: %v", err)
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return t, bad("ts: %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
		}
		t = v
	} else {
		f, err := number(raw)
		if err != nil {
			return t, bad("ts must be Unix seconds or an RFC 3339 string: %v", err)
		}
		t, err = unixSeconds(f)
		if err != nil {
			return t, err
		}
	}
	return checkTime(t, now)
}

func unixSeconds(f float64) (time.Time, error) {
	if f < 0 || f > 1e11 {
		return time.Time{}, bad("time %v is not plausible Unix seconds", f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).UTC(), nil
}

func checkTime(t, now time.Time) (time.Time, error) {
	if t.Before(minTime) {
		return t, bad("time %s is before 2000-01-01", t.UTC().Format(time.RFC3339))
	}
	if t.After(now.Add(maxAhead)) {
		return t, bad("time %s is more than 24 h ahead of the server's clock", t.UTC().Format(time.RFC3339))
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// checkName applies the SenML name rules: 1–128 bytes of A–Z a–z 0–9
// - : . / _, starting with a letter or digit.
func checkName(n string) error {
	if n == "" {
		return bad("a metric name is empty")
	}
	if len(n) > MaxNameLen {
		return bad("metric name %q… is %d bytes; at most %d", n[:32], len(n), MaxNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return bad("metric name %q must start with a letter or digit", n)
		}
		if !alnum && c != '-' && c != ':' && c != '.' && c != '/' && c != '_' {
			return bad("metric name %q: only letters, digits and - : . / _ are allowed", n)
		}
	}
	return nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s must not be a JSON %s", te.Field, te.Value)
		}
		return fmt.Sprintf("found a JSON %s", te.Value)
	}
	if errors.Is(err, errEOF) || err.Error() == "EOF" || strings.Contains(err.Error(), "unexpected EOF") {
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

var errEOF = errors.New("unexpected EOF")

// ---- SenML ----

// DecodeSenML reads a SenML pack (RFC 8428, JSON representation).
//
// Like DecodeObject it reads the payload as a stream of tokens, and a
// record that names a field twice is refused.
func DecodeSenML(payload []byte, now time.Time) ([]Point, error) {
	pd := getDecoder(payload)
	defer putDecoder(pd)
	d := pd.Decoder
	notPack := func(err error) error {
		return bad("payload is not a SenML pack (a JSON array of objects): %s", tokenReason(err))
	}
	tok, err := d.ReadToken()
	if err != nil {
		return nil, notPack(err)
	}
	if k := tok.Kind(); k != '[' {
		return nil, bad("payload is not a SenML pack (a JSON array of objects): found a JSON %s", kindName(k))
	}
	var (
		bn         string
		bt, bv, bs float64
		out        = make([]Point, 0, 4)
	)
	for i := 0; ; i++ {
		tok, err := d.ReadToken()
		if err != nil {
			return nil, notPack(err)
		}
		switch k := tok.Kind(); k {
		case '{':
		case ']':
		case 'n':
			return nil, bad("SenML record %d is null", i)
		default:
			return nil, bad("payload is not a SenML pack (a JSON array of objects): record %d is a JSON %s", i, kindName(k))
		}
		if tok.Kind() == ']' {
			if i == 0 {
				return nil, bad("SenML pack is empty")
			}
			break
		}
		if i == MaxPoints {
			return nil, bad("SenML pack holds more than %d records; at most %d per message", MaxPoints, MaxPoints)
		}
		var (
			n, vs, vd, unit string
			t, v, s         float64
			vb              bool
			hasS, hasName   bool
			values          int
			valueLabel      string
		)
		err = eachMember(d, notPack, func(label string, raw json.RawMessage) error {
			var err error
			switch label {
			case "bn":
				err = str(raw, &bn)
			case "bt":
				err = num(raw, &bt)
			case "bu":
				var u string
				err = str(raw, &u)
				if err == nil {
					err = checkUnit(u)
				}
			case "bv":
				err = num(raw, &bv)
			case "bs":
				err = num(raw, &bs)
			case "bver":
				var ver float64
				if err = num(raw, &ver); err == nil && (ver != math.Trunc(ver) || ver > senmlVersion || ver < 1) {
					err = fmt.Errorf("SenML version %v is not supported (at most %d)", ver, senmlVersion)
				}
			case "n":
				err, hasName = str(raw, &n), true
			case "u":
				if err = str(raw, &unit); err == nil {
					err = checkUnit(unit)
				}
			case "v":
				err = num(raw, &v)
				values, valueLabel = values+1, label
			case "vs":
				err = str(raw, &vs)
				values, valueLabel = values+1, label
				if err == nil && len(vs) > MaxStringLen {
					err = fmt.Errorf("string of %d bytes; at most %d", len(vs), MaxStringLen)
				}
			case "vb":
				switch string(bytes.TrimSpace(raw)) {
				case "true":
					vb = true
				case "false":
					vb = false
				default:
					err = errors.New("must be true or false")
				}
				values, valueLabel = values+1, label
			case "vd":
				if err = str(raw, &vd); err == nil {
					err = checkData(vd)
				}
				values, valueLabel = values+1, label
			case "s":
				err, hasS = num(raw, &s), true
			case "t":
				err = num(raw, &t)
			case "ut":
				var ut float64
				err = num(raw, &ut)
			default:
				if strings.HasSuffix(label, "_") {
					return bad("SenML record %d: field %q must be understood and is not supported", i, label)
				}
				// Other extension fields may be ignored (RFC 8428 §4.4).
			}
			if err != nil {
				return bad("SenML record %d, field %q: %v", i, label, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if values > 1 {
			return nil, bad("SenML record %d holds more than one of v, vs, vb, vd", i)
		}
		if values == 0 && !hasS {
			if hasName {
				return nil, bad("SenML record %d (%q) has no value", i, bn+n)
			}
			continue // a record of base fields only
		}
		name := bn + n
		if err := checkName(name); err != nil {
			return nil, bad("SenML record %d: %v", i, err)
		}
		at, err := senmlTime(bt+t, now)
		if err != nil {
			return nil, bad("SenML record %d: %v", i, err)
		}
		p := Point{Metric: name, Time: at}
		switch valueLabel {
		case "v":
			p.Kind, p.Num = model.KindNumber, bv+v
		case "vs":
			p.Kind, p.Text = model.KindString, vs
		case "vb":
			p.Kind = model.KindBool
			if vb {
				p.Num = 1
			}
		case "vd":
			p.Kind, p.Text = model.KindData, vd
		default: // a sum only
			p.Kind, p.Num = model.KindNumber, bs+s
		}
		if p.Kind == model.KindNumber && (math.IsInf(p.Num, 0) || math.IsNaN(p.Num)) {
			return nil, bad("SenML record %d: number out of range", i)
		}
		out = append(out, p)
	}
	if !atEnd(d) {
		return nil, bad("payload is not a SenML pack (a JSON array of objects): unexpected data after the JSON value")
	}
	if len(out) == 0 {
		return nil, bad("SenML pack holds no values")
	}
	return out, nil
}

func str(raw json.RawMessage, dst *string) error {
	if raw = bytes.TrimSpace(raw); len(raw) < 2 || raw[0] != '"' {
		return errors.New("must be a string")
	}
	if bytes.IndexByte(raw, '\\') < 0 { // no escapes: the text between the quotes
		*dst = string(raw[1 : len(raw)-1])
		return nil
	}
	b, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return errors.New("must be a string")
	}
	*dst = string(b)
	return nil
}

func num(raw json.RawMessage, dst *float64) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '"' || raw[0] == 'n' || raw[0] == 't' || raw[0] == 'f' || raw[0] == '{' || raw[0] == '[' {
		return errors.New("must be a number")
	}
	f, err := number(raw)
	if err != nil {
		return err
	}
	*dst = f
	return nil
}

func checkUnit(u string) error {
	if len(u) > 64 {
		return errors.New("unit is longer than 64 bytes")
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f {
			return errors.New("unit holds control characters")
		}
	}
	return nil
}

func checkData(vd string) error {
	if len(vd) > MaxStringLen {
		return fmt.Errorf("data of %d bytes; at most %d", len(vd), MaxStringLen)
	}
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(vd, "=")); err != nil {
		return errors.New("data must be base64url")
	}
	return nil
}

// senmlTime resolves a SenML time: below 2^28 it is relative to now.
func senmlTime(t float64, now time.Time) (time.Time, error) {
	if math.Abs(t) < relativeLimit {
		return checkTime(now.Add(time.Duration(t*float64(time.Second))), now)
	}
	at, err := unixSeconds(t)
	if err != nil {
		return at, err
	}
	return checkTime(at, now)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
