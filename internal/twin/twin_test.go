package twin

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := parseObject([]byte(s), "test")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMergePatch(t *testing.T) {
	// RFC 7396 appendix A, the object cases.
	cases := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, c := range cases {
		got, _ := json.Marshal(MergePatch(obj(t, c.target), obj(t, c.patch)))
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal([]byte(c.want), &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("merge %s with %s = %s, want %s", c.target, c.patch, got, c.want)
		}
	}
}

func TestDelta(t *testing.T) {
	cases := []struct{ desired, reported, want string }{
		{`{}`, `{}`, `{}`},
		{`{"a":1}`, `{}`, `{"a":1}`},
		{`{"a":1}`, `{"a":1.0}`, `{}`},
		{`{"a":1}`, `{"a":2,"b":3}`, `{"a":1}`},
		{`{"n":{"x":1,"y":2}}`, `{"n":{"x":1,"y":3}}`, `{"n":{"y":2}}`},
		{`{"n":{"x":1}}`, `{"n":5}`, `{"n":{"x":1}}`},
		{`{"l":[1,2]}`, `{"l":[1,2]}`, `{}`},
		{`{"l":[1,2]}`, `{"l":[2,1]}`, `{"l":[1,2]}`},
	}
	for _, c := range cases {
		got, _ := json.Marshal(Delta(&model.Twin{Desired: json.RawMessage(c.desired), Reported: json.RawMessage(c.reported)}))
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal([]byte(c.want), &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("delta of %s against %s = %s, want %s", c.desired, c.reported, got, c.want)
		}
	}
}

func TestParseObjectRefuses(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	for _, s := range []string{`[1]`, `"x"`, `null`, `{"a":1} {}`, `{"a":`, deep} {
		var inv *InvalidError
		if _, err := parseObject([]byte(s), "doc"); !errors.As(err, &inv) {
			t.Errorf("parseObject(%.20s) = %v, want an InvalidError", s, err)
		}
	}
	big := map[string]any{"x": strings.Repeat("y", MaxDocBytes)}
	if _, err := encode(big, "doc"); err == nil {
		t.Error("a document over the size limit was encoded")
	}
}
