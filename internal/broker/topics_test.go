package broker

import "testing"

func TestDeviceACL(t *testing.T) {
	const me = "dev_a"
	cases := []struct {
		topic      string
		pub, sub   bool // normal device
		qpub, qsub bool // quarantined
	}{
		{"d/dev_a/telemetry", true, true, false, false},
		{"d/dev_a/telemetry/senml", true, true, false, false},
		{"d/dev_a/twin/reported", true, true, false, false},
		{"d/dev_a/twin/get", true, true, false, false},
		{"d/dev_a/twin/desired", false, true, false, false},
		{"d/dev_a/commands/cmd_1/result", true, true, false, false},
		{"d/dev_a/commands/cmd_1", false, true, false, false},
		{"d/dev_a/commands/+", false, true, false, false},
		{"d/dev_a/commands//result", false, true, false, false},
		{"d/dev_a/ota/status", true, true, true, true},
		{"d/dev_a/ota/#", false, true, false, true},
		{"d/dev_a/security/metrics", true, true, false, false},
		{"d/dev_a/#", false, true, false, false},
		{"d/dev_a/other", false, true, false, false},
		{"d/dev_a", false, false, false, false},
		{"d/dev_a/", false, false, false, false},
		{"d/dev_b/telemetry", false, false, false, false},
		{"d/+/telemetry", false, false, false, false},
		{"d/#", false, false, false, false},
		{"#", false, false, false, false},
		{"+/dev_a/telemetry", false, false, false, false},
		{"$share/g/d/dev_a/telemetry", false, false, false, false},
		{"$SYS/#", false, false, false, false},
		{"d/dev_ab/telemetry", false, false, false, false},
	}
	for _, c := range cases {
		if got := deviceMayPublish(me, c.topic, false); got != c.pub {
			t.Errorf("publish %s: %v, want %v", c.topic, got, c.pub)
		}
		if got := deviceMaySubscribe(me, c.topic, false); got != c.sub {
			t.Errorf("subscribe %s: %v, want %v", c.topic, got, c.sub)
		}
		if got := deviceMayPublish(me, c.topic, true); got != c.qpub {
			t.Errorf("quarantined publish %s: %v, want %v", c.topic, got, c.qpub)
		}
		if got := deviceMaySubscribe(me, c.topic, true); got != c.qsub {
			t.Errorf("quarantined subscribe %s: %v, want %v", c.topic, got, c.qsub)
		}
	}
}

func TestAppACL(t *testing.T) {
	for f, want := range map[string]bool{
		"d/+/telemetry": true, "d/dev_a/telemetry": true, "d/+/telemetry/#": true, "d/+/twin/reported": true,
		"d/+/commands/+/result": true, "d/+/security/metrics": true,
		"d/+/twin/desired": false, "d/+/commands/+": false, "d/#": false, "#": false, "d/+/#": false,
		"d/a+/telemetry": false, "d/#/telemetry": false, "e/+/telemetry": false,
	} {
		if got := appMaySubscribe(f); got != want {
			t.Errorf("app subscribe %s: %v, want %v", f, got, want)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	for _, c := range []struct {
		f, t string
		want bool
	}{
		{"d/a/commands/+", "d/a/commands/x", true},
		{"d/a/commands/+", "d/a/commands/x/result", false},
		{"d/a/#", "d/a/commands/x", true},
		{"d/a/#", "d/a", true},
		{"d/+/+/x", "d/a/commands/x", true},
		{"d/a/commands/#", "d/a/commands/x", true},
		{"d/a/twin/desired", "d/a/twin/desired", true},
		{"d/a/twin/desired", "d/a/twin", false},
		{"d/a/twin", "d/a/twin/desired", false},
		{"#", "x", true},
	} {
		if got := matchFilter(c.f, c.t); got != c.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", c.f, c.t, got, c.want)
		}
	}
}
