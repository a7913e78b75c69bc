package broker_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// deviceFlow is what every client library must manage: telemetry in,
// twin desired out and reported in, a command out and its result in.
type deviceFlow struct {
	subscribe func(t *testing.T, filters ...string)
	publish   func(t *testing.T, topic string, qos byte, payload string)
	inbox     chan msg
}

// flow drives the device flow with paho.golang (MQTT 5); every filter
// must be granted QoS 1.
func (c *v5) flow() deviceFlow {
	return deviceFlow{inbox: c.inbox,
		subscribe: func(t *testing.T, f ...string) {
			for i, r := range c.subscribe(t, f...) {
				if r != 1 {
					t.Fatalf("SUBACK for %s: 0x%02x", f[i], r)
				}
			}
		},
		publish: c.mustPublish}
}

// flow drives the device flow with paho.mqtt.golang (MQTT 3.1.1).
func (c *v3) flow() deviceFlow {
	return deviceFlow{inbox: c.inbox, subscribe: c.subscribe,
		publish: func(t *testing.T, topic string, qos byte, payload string) {
			if err := c.publish(t, topic, qos, payload); err != nil {
				t.Fatal(err)
			}
		}}
}

// pausing is f with pause before every packet the device sends.
func (f deviceFlow) pausing(pause func()) deviceFlow {
	subscribe, publish := f.subscribe, f.publish
	f.subscribe = func(t *testing.T, filters ...string) { pause(); subscribe(t, filters...) }
	f.publish = func(t *testing.T, topic string, qos byte, payload string) { pause(); publish(t, topic, qos, payload) }
	return f
}

func runDeviceFlow(t *testing.T, e *env, dev *testserver.EnrolledDevice, c deviceFlow) {
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }
	c.subscribe(t, p("twin/desired"), p("twin/delta"), p("commands/+"), p("errors"))

	// On subscribe: the (empty) desired document and delta, in either
	// order (one SUBSCRIBE with several filters has no set order).
	first := nextEach(t, c.inbox, p("twin/desired"), p("twin/delta"))
	if d := decode(t, first[p("twin/desired")].payload); d["version"] != 0.0 {
		t.Fatalf("first desired: %v", d)
	}

	// Telemetry: JSON at QoS 1 is stored before the PUBACK, so it is
	// readable right away; SenML too.
	c.publish(t, p("telemetry"), 1, `{"temperature": 21.5, "door": "closed", "heating": true}`)
	if got := e.latest(t, id); got["temperature"] != 21.5 || got["door"] != "closed" || got["heating"] != true {
		t.Fatalf("latest after a QoS 1 publish: %v", got)
	}
	c.publish(t, p("telemetry/senml"), 1, `[{"bn":"boiler/","n":"flow","u":"Cel","v":61.2},{"n":"return","v":44}]`)
	if got := e.latest(t, id); got["boiler/flow"] != 61.2 || got["boiler/return"] != 44.0 {
		t.Fatalf("latest after SenML: %v", got)
	}
	c.publish(t, p("telemetry"), 0, `{"temperature": 22.5}`)
	eventually(t, "QoS 0 telemetry stored", func() bool { return e.latest(t, id)["temperature"] == 22.5 })
	res := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/telemetry?metric=temperature&step=1h&from="+
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil)
	// Buckets are aligned to the hour, so the two readings may fall on
	// either side of a boundary: check the totals, not the bucket count.
	var count, sum float64
	for _, bk := range res.Obj()["buckets"].([]any) {
		m := bk.(map[string]any)
		count += m["count"].(float64)
		sum += m["avg"].(float64) * m["count"].(float64)
	}
	if count != 2 || sum/count != 22.0 {
		t.Fatalf("downsampled temperature: %s", res)
	}

	// Desired set through the API reaches the device, with the delta.
	tw := e.must(t, http.StatusOK, http.MethodPatch, api+"/devices/"+id+"/twin/desired", map[string]any{"setpoint": 21, "mode": "eco"},
		"If-Match", `"0"`)
	if tw.Header.Get("ETag") != `"1"` {
		t.Fatalf("ETag after the first change: %q", tw.Header.Get("ETag"))
	}
	d := decode(t, next(t, c.inbox, p("twin/desired")).payload)
	if d["version"] != 1.0 || d["state"].(map[string]any)["setpoint"] != 21.0 {
		t.Fatalf("desired pushed to the device: %v", d)
	}
	if delta := decode(t, next(t, c.inbox, p("twin/delta")).payload); len(delta["state"].(map[string]any)) != 2 {
		t.Fatalf("delta after desired changed: %v", delta)
	}
	// A stale If-Match is a conflict.
	if r := e.do(t, http.MethodPatch, api+"/devices/"+id+"/twin/desired", map[string]any{"mode": "off"}, "If-Match", `"0"`); r.Status != http.StatusConflict {
		t.Fatalf("stale If-Match: %s", r)
	}
	// The device reports; the delta empties.
	c.publish(t, p("twin/reported"), 1, `{"setpoint": 21, "mode": "eco", "fw": {"version": "1.0"}}`)
	if delta := decode(t, next(t, c.inbox, p("twin/delta")).payload); len(delta["state"].(map[string]any)) != 0 {
		t.Fatalf("delta after the report: %v", delta)
	}
	tw = e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/twin", nil)
	rep := tw.Obj()["reported"].(map[string]any)
	if rep["version"] != 1.0 || rep["state"].(map[string]any)["fw"].(map[string]any)["version"] != "1.0" {
		t.Fatalf("reported through the API: %s", tw)
	}

	// A command: sent at once, answered, visible through the API.
	cmd := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands",
		map[string]any{"name": "reboot", "params": map[string]any{"delay": 5}, "timeout_seconds": 30})
	cid := cmd.Str("id")
	m := decode(t, next(t, c.inbox, p("commands/"+cid)).payload)
	if m["name"] != "reboot" || m["params"].(map[string]any)["delay"] != 5.0 || m["id"] != cid {
		t.Fatalf("command as received: %v", m)
	}
	c.publish(t, p("commands/"+cid+"/result"), 1, `{"status": "succeeded", "result": {"uptime": 12}}`)
	got := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/commands/"+cid, nil).Obj()
	if got["status"] != "succeeded" || got["result"].(map[string]any)["uptime"] != 12.0 || got["attempts"] != 1.0 {
		t.Fatalf("command after the result: %v", got)
	}
}

func TestPahoMQTT5(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	c := e.deviceV5(t, dev)
	runDeviceFlow(t, e, dev, c.flow())
	// The connection is visible through the API.
	conn := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+dev.DeviceID+"/connection", nil).Obj()
	if conn["connected"] != true || conn["method"] != "certificate" || conn["protocol_version"] != 5.0 {
		t.Fatalf("connection: %v", conn)
	}
}

func TestPahoMQTT311(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	c := e.deviceV3(t, dev)
	runDeviceFlow(t, e, dev, c.flow())
}

// TestMosquittoClients drives a device with the stock command line clients.
func TestMosquittoClients(t *testing.T) {
	pub, sub := mosquitto(t, "mosquitto_pub"), mosquitto(t, "mosquitto_sub")
	e := newEnv(t)
	dev := e.device(t)
	ca, cert, key := e.pemFiles(t, dev)
	host, port := hostPort(t, e.cert)
	base := []string{"-h", host, "-p", port, "--cafile", ca, "--cert", cert, "--key", key, "-i", dev.DeviceID}
	id := dev.DeviceID
	run := func(bin string, args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(append([]string{}, base...), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	for _, v := range []string{"mqttv311", "mqttv5"} {
		run(pub, "-V", v, "-q", "1", "-t", "d/"+id+"/telemetry", "-m", `{"temperature": 19.5, "proto": "`+v+`"}`)
		if got := e.latest(t, id); got["proto"] != v || got["temperature"] != 19.5 {
			t.Fatalf("after mosquitto_pub %s: %v", v, got)
		}
	}
	run(pub, "-q", "1", "-t", "d/"+id+"/telemetry/senml", "-m", `[{"bn":"boiler/","n":"flow","u":"Cel","v":61.2}]`)
	if got := e.latest(t, id); got["boiler/flow"] != 61.2 {
		t.Fatalf("after SenML: %v", got)
	}
	e.must(t, http.StatusOK, http.MethodPut, api+"/devices/"+id+"/twin/desired", map[string]any{"setpoint": 20})
	run(pub, "-q", "1", "-t", "d/"+id+"/twin/reported", "-m", `{"setpoint": 19}`)
	out := run(sub, "-V", "mqttv5", "-q", "1", "-v", "-C", "2", "-W", "10", "-t", "d/"+id+"/twin/desired", "-t", "d/"+id+"/twin/delta")
	if !strings.Contains(out, "d/"+id+`/twin/desired {"state":{"setpoint":20}`) || !strings.Contains(out, `/twin/delta {"state":{"setpoint":20},"version":1}`) {
		t.Fatalf("mosquitto_sub twin output:\n%s", out)
	}

	// A command sent while mosquitto_sub waits; the answer with mosquitto_pub.
	done := make(chan string, 1)
	go func() {
		o, err := exec.Command(sub, append(append([]string{}, base...), "-q", "1", "-C", "1", "-W", "15", "-F", "%t %p",
			"-t", "d/"+id+"/commands/+")...).CombinedOutput()
		if err != nil {
			o = append(o, []byte(fmt.Sprint(" error: ", err))...)
		}
		done <- string(o)
	}()
	eventually(t, "mosquitto_sub connected", func() bool {
		return e.do(t, http.MethodGet, api+"/devices/"+id+"/connection", nil).Obj()["connected"] == true
	})
	time.Sleep(200 * time.Millisecond) // its SUBSCRIBE follows the CONNACK
	cid := e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands", map[string]any{"name": "blink"}).Str("id")
	got := <-done
	if !strings.HasPrefix(got, "d/"+id+"/commands/"+cid+" ") || !strings.Contains(got, `"name":"blink"`) {
		t.Fatalf("mosquitto_sub got: %q", got)
	}
	run(pub, "-q", "1", "-t", "d/"+id+"/commands/"+cid+"/result", "-m", `{"status":"failed","error":"no LED"}`)
	c := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/commands/"+cid, nil).Obj()
	if c["status"] != "failed" || c["error"] != "no LED" {
		t.Fatalf("command after mosquitto_pub result: %v", c)
	}
}
