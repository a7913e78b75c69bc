package commands

import (
	"errors"
	"strings"
	"testing"
)

func TestParseResult(t *testing.T) {
	good := []string{`{"status":"succeeded"}`, `{"status":"failed","error":"disk full"}`, `{"status":"succeeded","result":{"a":[1]}}`}
	for _, s := range good {
		if _, err := ParseResult([]byte(s)); err != nil {
			t.Errorf("ParseResult(%s): %v", s, err)
		}
	}
	bad := map[string]string{
		`{"status":"done"}`:                "must be",
		`{"status":"succeeded","extra":1}`: "unknown field",
		`{"status":"succeeded"} {}`:        "after the JSON object",
		`[1]`:                              "not a JSON object",
		`{"status":"failed","error":"` + strings.Repeat("x", 1025) + `"}`:               "longer than 1024",
		`{"status":"succeeded","result":"` + strings.Repeat("x", MaxResultBytes) + `"}`: "at most",
	}
	for s, want := range bad {
		_, err := ParseResult([]byte(s))
		var re *ResultError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseResult(%.30s) = %v, want a ResultError naming %q", s, err, want)
		}
	}
}

func TestCommandName(t *testing.T) {
	for n, ok := range map[string]bool{"reboot": true, "fw.update:v2": true, "": false, "a b": false, strings.Repeat("a", 65): false} {
		if err := checkCommandName(n); (err == nil) != ok {
			t.Errorf("checkCommandName(%q) = %v", n, err)
		}
	}
}
