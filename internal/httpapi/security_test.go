package httpapi_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
	"github.com/steward-iot/steward/internal/vuln"
)

// ---- fixture: the security engine's resources in a tenant ----

// fixtureFirmware is the firmware version the fixture's SBOMs describe.
const fixtureFirmware = "1.2.3"

type securityFixture struct {
	advisories []string     // two tenant advisories affecting fixtureFirmware
	exposed    model.Device // a second device running fixtureFirmware
	findingID  string       // firmware.vulnerable of fixture.device
}

func (s securityFixture) secrets() []string {
	return append([]string{s.findingID, s.exposed.ID, s.exposed.Serial}, s.advisories...)
}

// fixtureSBOM lists two Go modules old enough for the fixture advisories.
func fixtureSBOM(netVersion, gogoVersion string) map[string]any {
	return map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
		"components": []map[string]any{
			{"type": "library", "name": "golang.org/x/net", "version": netVersion, "purl": "pkg:golang/golang.org/x/net@" + netVersion},
			{"type": "library", "name": "github.com/gogo/protobuf", "version": gogoVersion, "purl": "pkg:golang/github.com/gogo/protobuf@" + gogoVersion},
			{"type": "application", "name": "busybox", "version": "1.36.1"},
		}}
}

// fixtureAdvisory is a hand-written OSV record (unique ID) for a Go module.
func fixtureAdvisory(id, module, fixed string) map[string]any {
	return map[string]any{"id": id, "modified": "2024-01-01T00:00:00Z", "summary": "fixture advisory for " + module,
		"severity": []map[string]any{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}},
		"affected": []map[string]any{{"package": map[string]any{"ecosystem": "Go", "name": module},
			"ranges": []map[string]any{{"type": "SEMVER", "events": []map[string]any{{"introduced": "0"}, {"fixed": fixed}}}}}}}
}

// fixtureMUD allows HTTPS to a.example, opened by the device.
func fixtureMUD() map[string]any {
	return map[string]any{
		"ietf-mud:mud": map[string]any{"mud-version": 1, "mud-url": "https://mud.example/fixture", "last-update": "2024-01-01T00:00:00Z",
			"is-supported": true, "systeminfo": "fixture",
			"from-device-policy": map[string]any{"access-lists": map[string]any{"access-list": []map[string]any{{"name": "fr"}}}}},
		"ietf-access-control-list:acls": map[string]any{"acl": []map[string]any{{"name": "fr", "type": "ipv4-acl-type",
			"aces": map[string]any{"ace": []map[string]any{{"name": "https",
				"matches": map[string]any{"ipv4": map[string]any{"ietf-acldns:dst-dnsname": "a.example", "protocol": 6},
					"tcp": map[string]any{"destination-port": map[string]any{"operator": "eq", "port": 443}}},
				"actions": map[string]any{"forwarding": "accept"}}}}}}},
	}
}

func fixtureFlows() map[string]any {
	return map[string]any{"flows": []map[string]any{
		{"direction": "from-device", "protocol": "tcp", "remote_host": "a.example", "remote_address": "192.0.2.1", "remote_port": 443, "bytes": 100},
		{"direction": "from-device", "protocol": "tcp", "remote_host": "b.example", "remote_address": "198.51.100.2", "remote_port": 8443},
	}}
}

// fillSecurity gives f's tenant SBOMs (spare: two versions; product: the
// vulnerable one), two advisories, a second device on the vulnerable
// firmware, MUD profiles, two flows of device and the findings they cause.
func (f *fixture) fillSecurity(t *testing.T) {
	t.Helper()
	srv, key := f.srv, f.tenant.Admin.Secret
	put := func(path string, body any) {
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + path, Key: key, Body: body})
	}
	put("/products/"+f.spare.ID+"/sboms/"+fixtureFirmware, fixtureSBOM("v0.1.0", "v1.3.1"))
	put("/products/"+f.spare.ID+"/sboms/1.3.0", fixtureSBOM("v0.17.0", "v1.3.2"))
	put("/products/"+f.product.ID+"/sboms/"+fixtureFirmware, fixtureSBOM("v0.1.0", "v1.3.1"))
	f.sec.advisories = []string{srv.Unique("STW-FIXTURE"), srv.Unique("STW-FIXTURE")}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/advisories", Key: key,
		Body: []any{fixtureAdvisory(f.sec.advisories[0], "golang.org/x/net", "0.4.0"),
			fixtureAdvisory(f.sec.advisories[1], "github.com/gogo/protobuf", "1.3.2")}})
	f.sec.exposed = srv.CreateDevice(t, f.tenant.ID, f.product.ID, testserver.DeviceOpts{FirmwareVersion: fixtureFirmware})
	put("/products/"+f.product.ID+"/mud", fixtureMUD())
	put("/products/"+f.spare.ID+"/mud", fixtureMUD())
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.device.ID + "/flows", Key: key,
		Body: fixtureFlows()})
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key, Body: map[string]any{}})
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Key: key,
		Path: api + "/findings?check=firmware.vulnerable&resource_id=" + f.device.ID})
	items := res.Items()
	if len(items) != 1 {
		t.Fatalf("fixture: want one firmware.vulnerable finding of the device, got %s", res)
	}
	f.sec.findingID, _ = items[0]["id"].(string)
}

// securityBody is a valid body for the security engine's operations.
func (f *fixture) securityBody(opID string) (any, bool) {
	switch opID {
	case "importSBOM":
		return fixtureSBOM("v0.2.0", "v1.3.1"), true
	case "importAdvisories":
		return fixtureAdvisory(f.srv.Unique("STW-NEW"), "golang.org/x/net", "0.4.0"), true
	case "importMUD":
		return fixtureMUD(), true
	case "reportFlows":
		// A new destination each time: a report of known flows only
		// moves counters and is not audited.
		body := fixtureFlows()
		body["flows"] = append(body["flows"].([]map[string]any), map[string]any{"direction": "from-device", "protocol": "tcp",
			"remote_host": f.srv.Unique("c") + ".example", "remote_port": 443})
		return body, true
	case "suppressFinding":
		return map[string]any{"reason": "accepted until the next release", "until": time.Now().Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339)}, true
	case "runSecurityChecks":
		return map[string]any{"checks": []string{}}, true
	case "putSecuritySettings":
		return map[string]any{"stale_after_days": 14, "max_tenant_admin_keys": 5, "unused_key_days": 60, "flow_window_hours": 48}, true
	}
	return nil, false
}

// ---- the security engine through the API, on real data ----

func readTestdata(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile("../vuln/testdata/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVulnerabilities imports real OSV records and a firmware SBOM over the
// API and asks both questions: which advisories affect a device, and which
// devices an advisory (named by its CVE alias) affects, with fixed
// versions; bad input is refused and changes nothing.
func TestVulnerabilities(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "vulns")
		key := ten.Admin.Secret
		prod := srv.CreateProduct(t, ten.ID)
		old := srv.CreateDevice(t, ten.ID, prod.ID, testserver.DeviceOpts{FirmwareVersion: "1.0"})
		old2 := srv.CreateDevice(t, ten.ID, prod.ID, testserver.DeviceOpts{FirmwareVersion: "1.0"})
		fixed := srv.CreateDevice(t, ten.ID, prod.ID, testserver.DeviceOpts{FirmwareVersion: "1.1"})
		put := func(fw, file string) *testserver.Resp {
			return srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/" + fw, Key: key,
				Raw: readTestdata(t, file)})
		}
		if res := put("1.0", "handwritten/thermostat-fw-1.0.cdx.json"); res.Status != 200 || res.Obj()["components_without_purl"] != 1.0 {
			t.Fatalf("import SBOM 1.0: %s", res)
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/1.1", Key: key,
			Raw: readTestdata(t, "handwritten/thermostat-fw-1.1.cdx.json")})
		// A real SBOM (SPDX) for a version nobody runs.
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/2.0", Key: key,
			Raw: readTestdata(t, "sbom/modernc-sqlite-v1.62.0.spdx.json")})

		// Real records, as a platform-wide import by the platform admin.
		parsed, err := vuln.LoadAdvisoryFiles([]string{"../vuln/testdata/osv", "../vuln/testdata/handwritten/STEWARD-TEST-WITHDRAWN.json"})
		if err != nil {
			t.Fatal(err)
		}
		var records []json.RawMessage
		for _, p := range parsed {
			records = append(records, p.Advisory.Record)
		}
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/advisories", Key: srv.AdminKey, Body: records})
		if res.Obj()["added"] != float64(len(records)) {
			t.Fatalf("import: %s", res)
		}
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/advisories", Key: srv.AdminKey, Body: records})
		if res.Obj()["unchanged"] != float64(len(records)) {
			t.Fatalf("re-import: %s", res)
		}

		// Which advisories affect the old device?
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + old.ID + "/vulnerabilities", Key: key})
		var rep vuln.DeviceReport
		res.Into(t, &rep)
		got := map[string]vuln.DeviceAdvisory{}
		for _, it := range rep.Items {
			got[it.AdvisoryID] = it
		}
		for _, id := range []string{"GO-2022-1144", "GO-2024-2887", "GO-2021-0053", "GHSA-qppj-fm5r-hxr3", "GHSA-rhrv-645h-fjfh", "CVE-2024-1013"} {
			if _, ok := got[id]; !ok {
				t.Errorf("device on 1.0: %s missing from %s", id, res)
			}
		}
		if _, ok := got["STEWARD-TEST-WITHDRAWN"]; ok {
			t.Errorf("a withdrawn advisory was reported")
		}
		if a := got["GO-2021-0053"]; a.FixedFirmware != "1.1" || a.Rollout != nil || a.Packages[0].Fixed != "1.3.2" {
			t.Errorf("GO-2021-0053: fixed firmware %q, rollout %v, packages %+v", a.FixedFirmware, a.Rollout, a.Packages)
		}
		// 1.1 still ships the Debian package; 2.0 (the real SPDX SBOM) does not.
		if a := got["CVE-2024-1013"]; a.FixedFirmware != "2.0" {
			t.Errorf("CVE-2024-1013: fixed_firmware_version %q, want 2.0", a.FixedFirmware)
		}
		if !rep.HasSBOM || rep.Items[0].Severity != "high" {
			t.Errorf("report: has_sbom %v, first item %+v (most severe first)", rep.HasSBOM, rep.Items[0])
		}
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + fixed.ID + "/vulnerabilities", Key: key})
		res.Into(t, &rep)
		if len(rep.Items) != 1 || rep.Items[0].AdvisoryID != "CVE-2024-1013" {
			t.Errorf("device on 1.1: %s", res)
		}

		// Which devices does CVE-2022-41717 (alias of GO-2022-1144) affect?
		walked := map[string]bool{}
		cursor := ""
		for {
			res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Key: key,
				Path: api + "/advisories/CVE-2022-41717/devices?limit=1&cursor=" + cursor})
			var exp vuln.Exposure
			res.Into(t, &exp)
			if len(exp.Firmware) != 1 || exp.Firmware[0].FirmwareVersion != "1.0" || exp.Firmware[0].FixedFirmware != "1.1" {
				t.Fatalf("exposure firmware: %s", res)
			}
			for _, d := range exp.Items {
				walked[d.ID] = true
			}
			if cursor = exp.NextCursor; cursor == "" {
				break
			}
		}
		if len(walked) != 2 || !walked[old.ID] || !walked[old2.ID] {
			t.Errorf("exposed devices %v, want %s and %s", walked, old.ID, old2.ID)
		}
		srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodGet, Path: api + "/advisories/CVE-1999-0001/devices", Key: key})

		// Bad input: refused with the reason, nothing changes.
		before := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/products/" + prod.ID + "/sboms", Key: key}).Raw
		advBefore := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/advisories?limit=1000", Key: key}).Raw
		huge := append([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[`), []byte(strings.Repeat(" ", vuln.MaxSBOMBytes))...)
		for _, tc := range []struct {
			name   string
			req    testserver.Req
			status int
			want   string
		}{
			{"malformed SBOM", testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/1.0", Key: key,
				Raw: readTestdata(t, "bad/truncated.cdx.json")}, 422, "not valid JSON"},
			{"advisory as SBOM", testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/3.0", Key: key,
				Raw: readTestdata(t, "osv/GO-2021-0053.json")}, 422, "OSV advisory, not an SBOM"},
			{"huge SBOM", testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/3.0", Key: key, Raw: huge},
				413, "too large"},
			{"bad firmware version", testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/v-one", Key: key,
				Raw: readTestdata(t, "handwritten/thermostat-fw-1.1.cdx.json")}, 422, "firmware_version"},
			{"one bad record of a list", testserver.Req{Method: http.MethodPost, Path: api + "/advisories", Key: key,
				Raw: []byte(`[` + string(readTestdata(t, "handwritten/STEWARD-TEST-RANGES.json")) + `,` +
					string(readTestdata(t, "bad/osv-no-introduced.json")) + `]`)}, 422, "record 2"},
			{"SBOM as advisory", testserver.Req{Method: http.MethodPost, Path: api + "/advisories", Key: key,
				Raw: readTestdata(t, "sbom/alpine-zlib-16.cdx.json")}, 422, "CycloneDX SBOM, not an OSV"},
			{"SBOM of another tenant's product", testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/sboms/1.0",
				Key: srv.CreateTenant(t, "other").Admin.Secret, Raw: readTestdata(t, "handwritten/thermostat-fw-1.1.cdx.json")}, 404, "not found"},
		} {
			res := srv.Do(t, tc.req)
			if res.Status != tc.status || !containsFold(res.Problem().Text(), tc.want) {
				t.Errorf("%s: want %d naming %q, got %s", tc.name, tc.status, tc.want, res)
			}
		}
		if after := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/products/" + prod.ID + "/sboms", Key: key}).Raw; string(after) != string(before) {
			t.Errorf("bad SBOMs changed the list:\n%s\n%s", before, after)
		}
		if after := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/advisories?limit=1000", Key: key}).Raw; string(after) != string(advBefore) {
			t.Errorf("a refused advisory list imported something")
		}

		// The audit check turns the exposure into findings, and resolves
		// them when the devices move to the fixed firmware.
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key,
			Body: map[string]any{"checks": []string{"firmware.vulnerable"}}})
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=firmware.vulnerable", Key: key})
		if len(res.Items()) != 3 {
			t.Fatalf("want a finding per device, got %s", res)
		}
		srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: api + "/products/" + prod.ID + "/sboms/1.0", Key: key})
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key,
			Body: map[string]any{"checks": []string{"firmware.vulnerable"}}})
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=firmware.vulnerable&status=resolved", Key: key})
		if len(res.Items()) != 2 {
			t.Fatalf("without the 1.0 SBOM two findings resolve, got %s", res)
		}
	})
}

// TestNetworkPolicy imports a MUD file, reports flows, sees the deviation
// become a finding and the profile become nftables rules.
func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "mud")
		key := ten.Admin.Secret
		prod := srv.CreateProduct(t, ten.ID)
		d := srv.CreateDevice(t, ten.ID, prod.ID)
		mud, err := os.ReadFile("../netpolicy/testdata/lightbulb.mud.json")
		if err != nil {
			t.Fatal(err)
		}
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/mud", Key: key, Raw: mud})
		if flows, _ := res.Obj()["allowed_flows"].([]any); len(flows) != 7 {
			t.Fatalf("import: %s", res)
		}
		bad := srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.ID + "/mud", Key: key,
			Raw: []byte(`{"ietf-mud:mud": {"mud-version": 1}}`)})
		if bad.Status != 422 || !containsFold(bad.Problem().Text(), "acls container is missing") {
			t.Fatalf("bad MUD: %s", bad)
		}
		rules := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/products/" + prod.ID + "/mud/nftables", Key: key})
		if !strings.HasPrefix(rules.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(rules.Raw), "tcp dport 443") {
			t.Fatalf("nftables: %s", rules)
		}
		report := func(host string, port int) *testserver.Resp {
			return srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/flows", Key: key,
				Body: map[string]any{"flows": []map[string]any{{"direction": "from-device", "protocol": "tcp", "remote_host": host,
					"remote_address": "203.0.113.9", "remote_port": port}}}})
		}
		if r := report("test.example.com", 443); r.Obj()["outside_profile"] != 0.0 {
			t.Fatalf("allowed flow: %s", r)
		}
		if r := report("exfil.example.net", 4444); r.Obj()["outside_profile"] != 1.0 {
			t.Fatalf("deviation: %s", r)
		}
		// A flow seen again only moves its counters: one audit record per
		// report that brought a new flow, none for the repeat.
		report("exfil.example.net", 4444)
		var flowRecords []model.AuditRecord
		for _, rec := range auditTrail(t, srv, ten.ID) {
			if rec.Action == "flows.report" {
				flowRecords = append(flowRecords, rec)
			}
		}
		if len(flowRecords) != 2 {
			t.Fatalf("flows.report records: %d, want 2 (two new flows, one repeat)", len(flowRecords))
		}
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=network.flow_outside_profile", Key: key})
		items := res.Items()
		if len(items) != 1 || items[0]["severity"] != "high" || !strings.Contains(items[0]["title"].(string), "exfil.example.net") {
			t.Fatalf("flow finding: %s", res)
		}
		flows := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + d.ID + "/flows", Key: key})
		if len(flows.Items()) != 2 {
			t.Fatalf("flows: %s", flows)
		}
		// A profile that allows it resolves the finding on the next run.
		srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: api + "/products/" + prod.ID + "/mud", Key: key})
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key,
			Body: map[string]any{"checks": []string{"network.flow_outside_profile"}}})
		res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?status=resolved", Key: key})
		if len(res.Items()) != 1 {
			t.Fatalf("the deviation did not resolve: %s", res)
		}
	})
}

// TestFindingsLifecycle: a check fires, a suppression hides it with a
// reason until it expires, the condition clears and the finding resolves.
func TestFindingsLifecycle(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	ten := srv.CreateTenant(t, "findings")
	key := ten.Admin.Secret
	past := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products", Key: key,
		Body: map[string]any{"vendor": "Acme", "model": "Old", "end_of_support": past}})
	prodID := res.Str("id")
	d := srv.CreateDevice(t, ten.ID, prodID)
	run := func() map[string]any {
		return srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key, Body: map[string]any{}}).Obj()
	}
	if rep := run(); rep["opened"] == 0.0 {
		t.Fatalf("run: %v", rep)
	}
	res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=device.end_of_support", Key: key})
	items := res.Items()
	if len(items) != 1 || items[0]["resource_id"] != d.ID || items[0]["severity"] != "high" {
		t.Fatalf("end of support finding: %s", res)
	}
	id := items[0]["id"].(string)
	for _, tc := range []struct {
		body   map[string]any
		status int
		want   string
	}{
		{map[string]any{"reason": "x", "until": past}, 422, "future"},
		{map[string]any{"reason": "x", "until": time.Now().AddDate(2, 0, 0).Format(time.RFC3339)}, 422, "year"},
		{map[string]any{"until": time.Now().Add(time.Hour).Format(time.RFC3339)}, 422, "reason"},
	} {
		r := srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + "/findings/" + id + "/suppression", Key: key, Body: tc.body})
		if r.Status != tc.status || !containsFold(r.Problem().Text(), tc.want) {
			t.Errorf("suppress %v: want %d naming %q, got %s", tc.body, tc.status, tc.want, r)
		}
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/findings/" + id + "/suppression", Key: key,
		Body: map[string]any{"reason": "replacement ordered", "until": time.Now().Add(time.Hour).Format(time.RFC3339)}})
	if n := len(srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=device.end_of_support", Key: key}).Items()); n != 0 {
		t.Fatalf("a suppressed finding is listed by default")
	}
	res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?suppressed=only", Key: key})
	if len(res.Items()) != 1 || res.Items()[0]["suppressed_reason"] != "replacement ordered" {
		t.Fatalf("suppressed list: %s", res)
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodDelete, Path: api + "/findings/" + id + "/suppression", Key: key})
	// The product gets a new end of support: the finding resolves.
	future := time.Now().AddDate(3, 0, 0).UTC().Format(time.RFC3339)
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prodID, Key: key,
		Body: map[string]any{"vendor": "Acme", "model": "Old", "end_of_support": future}})
	if rep := run(); rep["resolved"] == 0.0 {
		t.Fatalf("run after the fix: %v", rep)
	}
	f := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings/" + id, Key: key}).Obj()
	if f["status"] != "resolved" || f["resolved_at"] == nil || f["first_seen"] == nil {
		t.Fatalf("finding after the fix: %v", f)
	}
	// Every step is in the audit trail.
	var actions []string
	for _, r := range auditTrail(t, srv, ten.ID) {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"findings.reconcile", "security.run", "finding.suppress", "finding.unsuppress"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit trail lacks %s: %v", want, actions)
		}
	}
	// Unknown checks are named.
	r := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: key, Body: map[string]any{"checks": []string{"nope"}}})
	if r.Status != 422 || !containsFold(r.Problem().Text(), "nope") {
		t.Fatalf("unknown check: %s", r)
	}
	// The platform's own checks run for the platform admin.
	rep := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/findings/run", Key: srv.AdminKey, Body: map[string]any{}}).Obj()
	if rep["opened"] == 0.0 {
		t.Fatalf("platform run: %v", rep)
	}
	res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/findings?check=apikey.platform_admin", Key: srv.AdminKey})
	if len(res.Items()) != 1 {
		t.Fatalf("platform admin key finding: %s", res)
	}
}
