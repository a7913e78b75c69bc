package storetest

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// fwRank is the firmware order the fixture uses, written out by hand so the
// expected results do not depend on the code under test: numeric per
// component (1.9 < 1.10 < 10.0), missing components are zero (1.10 =
// 1.10.0), a pre-release sorts before its release (2.0.0-rc1 < 2.0.0), a
// leading "v" is ignored. Rank 0 is "no firmware reported".
var fwRank = map[string]int{
	"":            0,
	"1.2.0":       1,
	"1.9":         2,
	"1.9.5":       3,
	"1.10.0-beta": 4,
	"1.10":        5,
	"1.10.0":      5,
	"v1.10.1":     6,
	"2.0.0-rc1":   7,
	"2.0.0-rc2":   8,
	"2.0.0":       9,
	"2":           9, // only used as a query bound
	"2.1":         10,
	"10.0":        11,
}

// fixtureFirmware are the versions devices carry, in no particular order.
var fixtureFirmware = []string{"2.0.0", "1.9", "", "10.0", "1.10", "2.0.0-rc1", "1.2.0", "v1.10.1",
	"1.10.0-beta", "1.9.5", "2.0.0-rc2", "1.10.0", "2.1"}

// mix is splitmix64: a fixed, well-spread function so the fixture looks
// random but is the same on every run and every Go version.
func mix(i, salt int) int {
	z := uint64(i)*0x9E3779B97F4A7C15 + uint64(salt)*0xD1B54A32D192ED03 + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return int((z ^ (z >> 31)) >> 1)
}

func pick(i, salt, n int) int { return mix(i, salt) % n }

type fleet struct {
	devices []model.Device // tenant A's, as stored (LastSeen filled in)
	static  map[string]bool
	dynamic model.DeviceQuery
}

const (
	fleetSize   = 36
	staticGroup = "grp-static"
	dynGroup    = "grp-dynamic"
	prodMain    = "prd-main"
	prodSide    = "prd-side"
)

var seenBase = at(24 * time.Hour)

// buildFleet writes tenant A's fleet (and a few look-alike devices of tenant
// B that must never show up) and returns what was written.
func buildFleet(t *testing.T, s store.Store) *fleet {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	createProduct(t, s, tenA, prodMain)
	createProduct(t, s, tenA, prodSide)
	createProduct(t, s, tenB, "prd-b")

	states := []model.State{model.StateManufactured, model.StateClaimed, model.StateProvisioned, model.StateActive,
		model.StateActive, model.StateActive, model.StateQuarantined, model.StateSuspended, model.StateEndOfSupport}
	tags := []string{"zone:north", "zone:south", "env=prod", "env=dev", "beta"}
	prefixes := []string{"AB-", "ABC-", "B-", "ab-"}
	f := &fleet{static: map[string]bool{}}
	for i := range fleetSize {
		d := model.Device{
			// IDs, serials and creation times each follow a different order
			// than insertion, so every sort has work to do.
			ID:              fmt.Sprintf("dev-%02d", (i*7+3)%fleetSize),
			TenantID:        tenA,
			ProductID:       prodMain,
			Serial:          fmt.Sprintf("%s%03d", prefixes[i%len(prefixes)], (i*5)%fleetSize),
			Name:            fmt.Sprintf("device %d", i),
			State:           states[pick(i, 1, len(states))],
			Tags:            []string{},
			Attributes:      map[string]string{"site": fmt.Sprintf("s%d", 1+pick(i, 20, 3))},
			FirmwareVersion: fixtureFirmware[i%len(fixtureFirmware)],
			CreatedAt:       at(time.Duration(pick(i, 40, 12)) * time.Minute), // ties on purpose
		}
		d.UpdatedAt = d.CreatedAt
		if i%3 == 0 {
			d.ProductID = prodSide
		}
		for k, tag := range tags {
			if pick(i, 10+k, 100) < 40 {
				d.Tags = append(d.Tags, tag)
			}
		}
		if pick(i, 22, 2) == 0 {
			d.Attributes["rack"] = fmt.Sprintf("r%d", 1+pick(i, 21, 3))
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateDevice(ctx, &d) })
		if pick(i, 50, 4) != 0 { // a quarter is never seen
			seen := seenBase.Add(time.Duration(pick(i, 51, 10)) * time.Hour) // ties on purpose
			noErr(t, s.TouchDevice(ctx, tenA, d.ID, seen), "TouchDevice")
			d.LastSeen = &seen
		}
		if pick(i, 60, 3) == 0 {
			f.static[d.ID] = true
		}
		f.devices = append(f.devices, d)
	}
	// Tenant B: devices that would match most of A's queries.
	for i := range 5 {
		d := newDevice(tenB, "prd-b", fmt.Sprintf("dev-%02db", i*7), fmt.Sprintf("AB-%03d", i))
		d.State, d.FirmwareVersion = model.StateActive, fixtureFirmware[i]
		d.Tags = []string{"zone:north", "env=prod", "beta"}
		d.Attributes = map[string]string{"site": "s1", "rack": "r1"}
		createDevice(t, s, d)
		noErr(t, s.TouchDevice(ctx, tenB, d.ID, seenBase.Add(3*time.Hour)), "TouchDevice")
	}

	f.dynamic = model.DeviceQuery{Tags: []string{"env=prod"}, MinVersion: "1.9"}
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, g := range []model.Group{
			{ID: staticGroup, TenantID: tenA, Name: "hand-picked", Kind: model.GroupStatic, CreatedAt: base},
			{ID: dynGroup, TenantID: tenA, Name: "prod on 1.9+", Kind: model.GroupDynamic, Query: &f.dynamic, CreatedAt: base},
			{ID: "grp-b", TenantID: tenB, Name: "B's", Kind: model.GroupStatic, CreatedAt: base},
		} {
			if err := tx.CreateGroup(ctx, &g); err != nil {
				return err
			}
		}
		if err := tx.AddGroupMembers(ctx, tenA, staticGroup, slices.Sorted(maps.Keys(f.static))); err != nil {
			return err
		}
		return tx.AddGroupMembers(ctx, tenB, "grp-b", []string{"dev-00b"})
	})
	return f
}

// match is the oracle: does d satisfy q, by the contract's rules.
func (f *fleet) match(t *testing.T, d model.Device, q model.DeviceQuery) bool {
	t.Helper()
	rank := func(v string) int {
		r, ok := fwRank[v]
		if !ok {
			t.Fatalf("fixture has no rank for version %q", v)
		}
		return r
	}
	if q.ProductID != "" && d.ProductID != q.ProductID {
		return false
	}
	if len(q.States) > 0 && !slices.Contains(q.States, d.State) {
		return false
	}
	for _, tag := range q.Tags {
		if !slices.Contains(d.Tags, tag) {
			return false
		}
	}
	for k, v := range q.Attrs {
		if got, ok := d.Attributes[k]; !ok || got != v {
			return false
		}
	}
	if q.FirmwareVersion != "" && d.FirmwareVersion != q.FirmwareVersion {
		return false
	}
	if q.MinVersion != "" && (d.FirmwareVersion == "" || rank(d.FirmwareVersion) < rank(q.MinVersion)) {
		return false
	}
	if q.MaxVersion != "" && (d.FirmwareVersion == "" || rank(d.FirmwareVersion) >= rank(q.MaxVersion)) {
		return false
	}
	if q.SeenAfter != nil && (d.LastSeen == nil || d.LastSeen.Before(*q.SeenAfter)) {
		return false
	}
	if q.SeenBefore != nil && (d.LastSeen == nil || !d.LastSeen.Before(*q.SeenBefore)) {
		return false
	}
	if q.NeverSeen && d.LastSeen != nil {
		return false
	}
	if q.SerialPrefix != "" && !strings.HasPrefix(d.Serial, q.SerialPrefix) {
		return false
	}
	switch q.GroupID {
	case "":
	case staticGroup:
		return f.static[d.ID]
	case dynGroup:
		return f.match(t, d, f.dynamic)
	default:
		t.Fatalf("oracle knows no group %q", q.GroupID)
	}
	return true
}

// expect returns the IDs of A's devices matching q, in ID order.
func (f *fleet) expect(t *testing.T, q model.DeviceQuery) []string {
	t.Helper()
	var out []string
	for _, d := range f.devices {
		if f.match(t, d, q) {
			out = append(out, d.ID)
		}
	}
	slices.Sort(out)
	return out
}

// order returns A's device IDs matching q in the order of sort (ascending;
// ties broken by ID), computed in Go.
func (f *fleet) order(t *testing.T, q model.DeviceQuery, sort model.SortField, desc bool) []string {
	t.Helper()
	var ds []model.Device
	for _, d := range f.devices {
		if f.match(t, d, q) {
			ds = append(ds, d)
		}
	}
	seen := func(d model.Device) int64 {
		if d.LastSeen == nil {
			return 0 // never seen sorts as the oldest
		}
		return d.LastSeen.UnixMicro()
	}
	slices.SortFunc(ds, func(a, b model.Device) int {
		var c int
		switch sort {
		case model.SortSerial:
			c = strings.Compare(a.Serial, b.Serial) // byte order
		case model.SortLastSeen:
			c = cmp.Compare(seen(a), seen(b))
		case model.SortFirmware:
			c = cmp.Compare(fwRank[a.FirmwareVersion], fwRank[b.FirmwareVersion]) // none first
		case model.SortCreated:
			c = a.CreatedAt.Compare(b.CreatedAt)
		}
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		return c
	})
	out := ids(ds)
	if desc {
		slices.Reverse(out)
	}
	return out
}

func testFleetQuery(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := buildFleet(t, s)
	all := f.expect(t, model.DeviceQuery{})
	if len(all) != fleetSize {
		t.Fatalf("fixture: %d devices, want %d", len(all), fleetSize)
	}
	seen := func(h time.Duration) *time.Time { return ptr(seenBase.Add(h)) }

	// fws, when set, lists by hand the firmware versions the result must
	// hold: a check on the oracle itself for the version ordering rules.
	filters := []struct {
		name  string
		q     model.DeviceQuery
		fws   []string
		empty bool // the expected result is empty on purpose
	}{
		{name: "all", q: model.DeviceQuery{}},
		{name: "product", q: model.DeviceQuery{ProductID: prodSide}},
		{name: "product of another tenant", q: model.DeviceQuery{ProductID: "prd-b"}, empty: true},
		{name: "one state", q: model.DeviceQuery{States: []model.State{model.StateActive}}},
		{name: "two states", q: model.DeviceQuery{States: []model.State{model.StateQuarantined, model.StateClaimed}}},
		{name: "one tag", q: model.DeviceQuery{Tags: []string{"beta"}}},
		{name: "all of two tags", q: model.DeviceQuery{Tags: []string{"zone:north", "env=prod"}}},
		{name: "all of three tags", q: model.DeviceQuery{Tags: []string{"zone:south", "env=dev", "beta"}}},
		{name: "unknown tag", q: model.DeviceQuery{Tags: []string{"nope"}}, empty: true},
		{name: "one attribute", q: model.DeviceQuery{Attrs: map[string]string{"site": "s2"}}},
		{name: "two attributes", q: model.DeviceQuery{Attrs: map[string]string{"site": "s1", "rack": "r2"}}},
		{name: "attribute value nobody has", q: model.DeviceQuery{Attrs: map[string]string{"site": "s9"}}, empty: true},
		{name: "firmware exact 1.10", q: model.DeviceQuery{FirmwareVersion: "1.10"}, fws: []string{"1.10"}},
		{name: "firmware exact v1.10.1", q: model.DeviceQuery{FirmwareVersion: "v1.10.1"}, fws: []string{"v1.10.1"}},
		{name: "min 1.10", q: model.DeviceQuery{MinVersion: "1.10"},
			fws: []string{"1.10", "1.10.0", "v1.10.1", "2.0.0-rc1", "2.0.0-rc2", "2.0.0", "2.1", "10.0"}},
		{name: "max 1.10", q: model.DeviceQuery{MaxVersion: "1.10"},
			fws: []string{"1.2.0", "1.9", "1.9.5", "1.10.0-beta"}},
		{name: "min 1.9 max 2.0.0", q: model.DeviceQuery{MinVersion: "1.9", MaxVersion: "2.0.0"},
			fws: []string{"1.9", "1.9.5", "1.10.0-beta", "1.10", "1.10.0", "v1.10.1", "2.0.0-rc1", "2.0.0-rc2"}},
		{name: "min 2.0.0-rc1", q: model.DeviceQuery{MinVersion: "2.0.0-rc1"},
			fws: []string{"2.0.0-rc1", "2.0.0-rc2", "2.0.0", "2.1", "10.0"}},
		{name: "min 2.0.0 excludes its pre-releases", q: model.DeviceQuery{MinVersion: "2.0.0"},
			fws: []string{"2.0.0", "2.1", "10.0"}},
		{name: "max 2 includes the pre-releases of 2.0.0", q: model.DeviceQuery{MinVersion: "2.0.0-rc1", MaxVersion: "2"},
			fws: []string{"2.0.0-rc1", "2.0.0-rc2"}},
		{name: "seen after", q: model.DeviceQuery{SeenAfter: seen(4*time.Hour + 30*time.Minute)}},
		{name: "seen before", q: model.DeviceQuery{SeenBefore: seen(3*time.Hour + 30*time.Minute)}},
		{name: "seen between", q: model.DeviceQuery{SeenAfter: seen(90 * time.Minute), SeenBefore: seen(6*time.Hour + 30*time.Minute)}},
		{name: "never seen", q: model.DeviceQuery{NeverSeen: true}},
		{name: "serial prefix AB", q: model.DeviceQuery{SerialPrefix: "AB"}},
		{name: "serial prefix ABC-", q: model.DeviceQuery{SerialPrefix: "ABC-"}},
		{name: "serial prefix is case-sensitive", q: model.DeviceQuery{SerialPrefix: "ab-0"}},
		{name: "serial prefix nobody has", q: model.DeviceQuery{SerialPrefix: "ZZ"}, empty: true},
		{name: "static group", q: model.DeviceQuery{GroupID: staticGroup}},
		{name: "dynamic group", q: model.DeviceQuery{GroupID: dynGroup}},
		{name: "dynamic group and a state", q: model.DeviceQuery{GroupID: dynGroup, States: []model.State{model.StateActive}}},
		{name: "static group and product and tag", q: model.DeviceQuery{GroupID: staticGroup, ProductID: prodMain, Tags: []string{"beta"}}},
		{name: "product, states, tag, attribute, version, seen", q: model.DeviceQuery{ProductID: prodMain,
			States: []model.State{model.StateActive, model.StateQuarantined, model.StateSuspended}, Tags: []string{"zone:north"},
			Attrs: map[string]string{"site": "s3"}, MinVersion: "1.9", SeenAfter: seen(0)}},
	}
	t.Run("filters", func(t *testing.T) {
		for _, c := range filters {
			t.Run(c.name, func(t *testing.T) {
				want := f.expect(t, c.q)
				switch {
				case c.empty && len(want) != 0:
					t.Fatalf("fixture: expected nothing, oracle finds %v", want)
				case !c.empty && len(want) == 0:
					t.Fatal("fixture: the oracle finds nothing, the case tests nothing")
				case !c.empty && c.q.GroupID == "" && len(want) == len(all) && c.name != "all":
					t.Fatal("fixture: the oracle finds every device, the filter is not tested")
				}
				if c.fws != nil {
					var got []string
					for _, d := range f.devices {
						if slices.Contains(want, d.ID) && !slices.Contains(got, d.FirmwareVersion) {
							got = append(got, d.FirmwareVersion)
						}
					}
					slices.Sort(got)
					wantFws := slices.Sorted(slices.Values(c.fws))
					if !slices.Equal(got, wantFws) {
						t.Fatalf("fixture: oracle selects firmware %v, hand-written list says %v", got, wantFws)
					}
				}
				gotAll, next, err := s.QueryDevices(ctx, tenA, c.q, model.Page{Limit: 1000})
				noErr(t, err, "QueryDevices")
				if next != "" {
					t.Fatalf("one page of 1000 has next cursor %q", next)
				}
				wantIDs(t, ids(gotAll), want, "one page")
				for _, d := range gotAll {
					if d.TenantID != tenA {
						t.Fatalf("device %s of tenant %s in A's result", d.ID, d.TenantID)
					}
				}
				paged := walk(t, 4, deviceID, func(cur string) ([]model.Device, string, error) {
					return s.QueryDevices(ctx, tenA, c.q, model.Page{Limit: 4, Cursor: cur})
				})
				wantIDs(t, paged, want, "pages of 4")
				n, err := s.CountDevices(ctx, tenA, c.q)
				noErr(t, err, "CountDevices")
				if n != int64(len(want)) {
					t.Fatalf("CountDevices = %d, want %d", n, len(want))
				}
			})
		}
	})

	t.Run("devices read back whole", func(t *testing.T) {
		got, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 1000})
		noErr(t, err, "QueryDevices")
		byID := map[string]model.Device{}
		for _, d := range f.devices {
			d.Version = 1
			byID[d.ID] = d
		}
		for _, d := range got {
			wantEqual(t, d, byID[d.ID], "queried device "+d.ID)
		}
	})

	t.Run("sorts", func(t *testing.T) {
		sorts := []model.SortField{model.SortID, model.SortSerial, model.SortLastSeen, model.SortFirmware, model.SortCreated}
		queries := []struct {
			name string
			q    model.DeviceQuery
		}{
			{"all", model.DeviceQuery{}},
			{"active or claimed", model.DeviceQuery{States: []model.State{model.StateActive, model.StateClaimed}}},
		}
		for _, qc := range queries {
			for _, sort := range sorts {
				for _, desc := range []bool{false, true} {
					for _, limit := range []int{1, 4, 7, fleetSize} {
						name := fmt.Sprintf("%s/%s/desc=%v/limit=%d", qc.name, sort, desc, limit)
						if qc.name != "all" && limit == 1 {
							continue
						}
						t.Run(name, func(t *testing.T) {
							want := f.order(t, qc.q, sort, desc)
							got := walk(t, limit, deviceID, func(cur string) ([]model.Device, string, error) {
								return s.QueryDevices(ctx, tenA, qc.q, model.Page{Limit: limit, Cursor: cur, Sort: sort, Desc: desc})
							})
							wantIDs(t, got, want, "pages in order")
						})
					}
				}
			}
		}
		// The default sort is by ID.
		got := walk(t, 5, deviceID, func(cur string) ([]model.Device, string, error) {
			return s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 5, Cursor: cur})
		})
		wantIDs(t, got, all, "default order")
	})

	t.Run("cursors", func(t *testing.T) {
		sorts := []model.SortField{model.SortID, model.SortSerial, model.SortLastSeen, model.SortFirmware, model.SortCreated}
		for _, from := range sorts {
			_, cur, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 2, Sort: from})
			noErr(t, err, "QueryDevices")
			if cur == "" {
				t.Fatalf("sort %s: first page of 2 has no next cursor", from)
			}
			for _, to := range sorts {
				if to == from {
					continue
				}
				_, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 2, Sort: to, Cursor: cur})
				wantErr(t, err, store.ErrBadCursor, fmt.Sprintf("cursor of sort %s used with sort %s", from, to))
			}
		}
		for _, c := range garbageCursors {
			for _, sort := range sorts {
				_, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 2, Sort: sort, Cursor: c})
				wantErr(t, err, store.ErrBadCursor, fmt.Sprintf("garbage cursor %.20q with sort %s", c, sort))
			}
		}
		// A cursor of another list is not a device cursor either.
		createTenants(t, s, "ten-c", "ten-d")
		_, tcur, err := s.ListTenants(ctx, store.ListOptions{Limit: 1})
		noErr(t, err, "ListTenants")
		_, _, err = s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 2, Cursor: tcur})
		wantErr(t, err, store.ErrBadCursor, "a tenant list cursor used for devices")
		// Some base64 JSON that decodes but was never issued for this sort.
		forged := base64.RawURLEncoding.EncodeToString([]byte(`{"i":"dev-01","s":"colour"}`))
		_, _, err = s.QueryDevices(ctx, tenA, model.DeviceQuery{}, model.Page{Limit: 2, Cursor: forged})
		wantErr(t, err, store.ErrBadCursor, "a cursor naming an unknown sort")
	})

	t.Run("invalid requests", func(t *testing.T) {
		for _, c := range []struct {
			name string
			q    model.DeviceQuery
			p    model.Page
		}{
			{"unknown state", model.DeviceQuery{States: []model.State{"melted"}}, model.Page{}},
			{"bad min version", model.DeviceQuery{MinVersion: "one.two"}, model.Page{}},
			{"bad max version", model.DeviceQuery{MaxVersion: "1.x"}, model.Page{}},
			{"bad tag", model.DeviceQuery{Tags: []string{"no spaces allowed"}}, model.Page{}},
			{"unknown sort", model.DeviceQuery{}, model.Page{Sort: "colour"}},
			{"missing group", model.DeviceQuery{GroupID: "grp-missing"}, model.Page{}},
		} {
			if _, _, err := s.QueryDevices(ctx, tenA, c.q, c.p); err == nil {
				t.Errorf("QueryDevices with %s: no error", c.name)
			}
			if c.p.Sort == "" {
				if _, err := s.CountDevices(ctx, tenA, c.q); err == nil {
					t.Errorf("CountDevices with %s: no error", c.name)
				}
			}
		}
		_, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{GroupID: "grp-missing"}, model.Page{})
		wantErr(t, err, store.ErrNotFound, "QueryDevices by a missing group")
	})
}
