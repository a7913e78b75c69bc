package fleet

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// The fleet's vocabularies. Everything is drawn from a seeded generator, so
// the same flags give the same fleet (and the same query parameters) on
// every run and on both backends.

// FirmwareVersions are the 30 versions devices run, oldest first. 3.8.0 <
// 3.10.0 on purpose: the range filter must compare numerically.
var FirmwareVersions = []string{
	"1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.2",
	"1.8.0", "1.9.0", "1.10.0", "1.10.1", "2.0.0", "2.0.1", "2.1.0", "2.2.0", "2.3.0", "2.4.1",
	"2.5.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", "3.8.0", "3.10.0", "3.10.2",
}

// TagVocabulary is ranked by popularity: a device draws its tags with a
// Zipf-like weight 1/rank, so "prod" is on about a third of the fleet and
// the last ones on a few hundred devices per million.
var TagVocabulary = []string{
	"prod", "outdoor", "indoor", "battery", "mains", "staging", "zone:north", "zone:south", "zone:east", "zone:west",
	"critical", "canary", "beta", "dev", "floor:1", "floor:2", "floor:3", "team:facilities", "team:security", "team:ops",
	"hvac", "lighting", "metering", "access-control", "camera", "gateway", "legacy", "pilot", "lab", "retail",
	"warehouse", "office", "cold-chain", "fleet:trucks", "fleet:vans", "solar", "wind", "ev-charger", "pump", "valve",
	"customer:acme", "customer:globex", "customer:initech", "customer:umbrella", "rma", "refurbished", "loaner",
	"demo", "do-not-update", "debug",
}

var regions = []string{"eu-west", "eu-central", "eu-north", "us-east", "us-west", "ap-south", "ap-northeast", "sa-east"}

// stateWeights is the lifecycle mix of a mature fleet.
var stateWeights = []struct {
	s model.State
	w float64
}{
	{model.StateActive, 0.85},
	{model.StateEndOfSupport, 0.04},
	{model.StateProvisioned, 0.035},
	{model.StateDecommissioned, 0.03},
	{model.StateQuarantined, 0.02},
	{model.StateSuspended, 0.015},
	{model.StateManufactured, 0.005},
	{model.StateClaimed, 0.005},
}

// productCatalog is what tenant one runs (20 products); the small second
// tenant uses the first three models under its own product IDs, so its
// serials look exactly like tenant one's and only the tenant filter keeps
// them apart.
var productCatalog = []struct{ vendor, model, code string }{
	{"Acme", "Thermostat TH-200", "TH200"},
	{"Acme", "Smart Plug SP-10", "SP10"},
	{"Acme", "Door Sensor DS-3", "DS3"},
	{"Nordlicht", "LED Driver L4", "NL4"},
	{"Nordlicht", "Gateway GW-1", "NGW1"},
	{"Voltix", "Energy Meter EM-3", "EM3"},
	{"Voltix", "EV Charger VC-22", "VC22"},
	{"Aqua", "Flow Meter FM-1", "FM1"},
	{"Aqua", "Valve Controller VX", "AQVX"},
	{"Sensa", "Air Quality AQ-5", "AQ5"},
	{"Sensa", "Temperature Logger T9", "ST9"},
	{"Sensa", "Motion Sensor M2", "SM2"},
	{"Kamera", "Camera C-400", "KC400"},
	{"Kamera", "Doorbell DB-2", "KDB2"},
	{"Fieldline", "Pump Controller P7", "FP7"},
	{"Fieldline", "Tank Level TL-1", "FTL1"},
	{"Solaris", "Inverter SI-5", "SI5"},
	{"Solaris", "Battery Monitor BM", "SBM"},
	{"Tracko", "Asset Tracker AT-4", "AT4"},
	{"Tracko", "Cold Chain Logger CC", "TCC"},
}

// Dataset is a generated fleet of two tenants.
type Dataset struct {
	Now      time.Time
	Tenants  []model.Tenant // [0] the big one, [1] the small one
	Products []model.Product
	Codes    map[string]string // product ID → serial code
	T1Prods  []string          // tenant one's product IDs
	Devices  []model.Device    // both tenants, in ID order
	rows     []deviceRow       // stored form of Devices[i]
	TagRows  []TagRow          // sorted by primary key
	AttrRows []AttrRow         // sorted by primary key
	T1       []int             // indexes of tenant one's devices
	ByState  map[string]map[model.State]int64
}

// deviceRow holds the columns that devices.go derives from a device.
type deviceRow struct{ tags, attrs, fwKey string }

// TagRow is one device_tags row.
type TagRow struct{ tenant, tag, device string }

// AttrRow is one device_attrs row.
type AttrRow struct{ tenant, key, value, device string }

// weighted picks an index with probability proportional to w.
type weighted struct{ cum []float64 }

func newWeighted(w []float64) weighted {
	c := make([]float64, len(w))
	s := 0.0
	for i, x := range w {
		s += x
		c[i] = s
	}
	for i := range c {
		c[i] /= s
	}
	return weighted{c}
}

func (w weighted) pick(r *rand.Rand) int {
	i := sort.SearchFloat64s(w.cum, r.Float64())
	return min(i, len(w.cum)-1)
}

// Generate builds a fleet of n devices for tenant one and n2 for tenant two.
func Generate(seed uint64, n, n2 int, now time.Time) (*Dataset, error) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	now = now.UTC().Truncate(time.Second)
	ds := &Dataset{Now: now, Codes: map[string]string{}, ByState: map[string]map[model.State]int64{}}

	created := now.Add(-3 * 365 * 24 * time.Hour)
	ds.Tenants = []model.Tenant{
		{ID: mkID(r, "ten", created), Name: "bench-fleet-operator", Kind: model.TenantEnterprise, CreatedAt: created},
		{ID: mkID(r, "ten", created.Add(time.Hour)), Name: "bench-small-site", Kind: model.TenantEnterprise, CreatedAt: created.Add(time.Hour)},
	}
	for ti, t := range ds.Tenants {
		ds.ByState[t.ID] = map[model.State]int64{}
		nProd := len(productCatalog)
		if ti == 1 {
			nProd = 3
		}
		for i := range nProd {
			c := productCatalog[i]
			at := created.Add(time.Duration(ti*100+i) * time.Hour)
			p := model.Product{ID: mkID(r, "prd", at), TenantID: t.ID, Vendor: c.vendor, Model: c.model,
				CreatedAt: at, UpdatedAt: at}
			if i%7 == 3 { // a few products are past or near their end of support
				eos := now.Add(time.Duration(i-10) * 30 * 24 * time.Hour)
				p.EndOfSupport = &eos
			}
			ds.Products = append(ds.Products, p)
			ds.Codes[p.ID] = c.code
			if ti == 0 {
				ds.T1Prods = append(ds.T1Prods, p.ID)
			}
		}
	}

	// Product sizes are skewed (the biggest is ~15× the smallest), and so
	// are sites: a few large buildings and a long tail of small ones.
	prodW := make([]float64, len(ds.T1Prods))
	for i := range prodW {
		prodW[i] = 1 / math.Pow(float64(i+1), 0.9)
	}
	prodPick := newWeighted(prodW)
	fwW := make([]float64, len(FirmwareVersions))
	for i := range fwW {
		fwW[i] = math.Pow(1.12, float64(i)) // newer versions are more common
	}
	fwPick := newWeighted(fwW)
	tagW := make([]float64, len(TagVocabulary))
	for i := range tagW {
		tagW[i] = 1 / float64(i+1)
	}
	tagPick := newWeighted(tagW)
	stW := make([]float64, len(stateWeights))
	for i, s := range stateWeights {
		stW[i] = s.w
	}
	statePick := newWeighted(stW)
	tagCount := newWeighted([]float64{0.20, 0.35, 0.30, 0.15}) // 0–3 tags

	const day = 24 * time.Hour
	total := n + n2
	ds.Devices = make([]model.Device, total)
	for i := range total {
		d := &ds.Devices[i]
		if i < n {
			d.TenantID = ds.Tenants[0].ID
			d.ProductID = ds.T1Prods[prodPick.pick(r)]
		} else {
			d.TenantID = ds.Tenants[1].ID
			d.ProductID = ds.Products[len(ds.T1Prods)+r.IntN(3)].ID
		}
		d.State = stateWeights[statePick.pick(r)].s
		// Installed over the last two years, fewer long ago.
		age := time.Duration(math.Pow(r.Float64(), 1.3) * float64(730*day))
		d.CreatedAt = now.Add(-age).Truncate(time.Microsecond)
		d.UpdatedAt = d.CreatedAt.Add(time.Duration(r.Float64() * float64(now.Sub(d.CreatedAt)))).Truncate(time.Microsecond)
		d.Version = 1 + int64(r.IntN(6))

		fresh := d.State == model.StateManufactured || d.State == model.StateClaimed
		d.Tags = []string{}
		d.Attributes = map[string]string{}
		if !fresh {
			d.FirmwareVersion = FirmwareVersions[fwPick.pick(r)]
			for k := tagCount.pick(r); len(d.Tags) < k; {
				if t := TagVocabulary[tagPick.pick(r)]; !slices.Contains(d.Tags, t) {
					d.Tags = append(d.Tags, t)
				}
			}
			site := int(1000 * math.Pow(r.Float64(), 1.5))
			d.Attributes["site"] = fmt.Sprintf("site-%d", site)
			d.Attributes["region"] = regions[site%len(regions)]
			if x := r.IntN(10); x < 6 {
				d.Attributes["power"] = []string{"mains", "mains", "mains", "battery", "battery", "poe"}[x]
			}
		}
		// Last seen over the last 30 days; about 5% never connected.
		never := fresh || (d.State == model.StateProvisioned && r.IntN(10) < 8) || r.IntN(1000) < 12
		if !never {
			var ago time.Duration
			if d.State == model.StateActive && r.IntN(4) != 0 {
				ago = time.Duration(r.Float64() * float64(day)) // most active devices reported today
			} else {
				ago = time.Duration(r.Float64() * float64(30*day))
			}
			seen := now.Add(-ago).Truncate(time.Microsecond)
			if seen.Before(d.CreatedAt) {
				seen = d.CreatedAt.Add(time.Minute)
			}
			d.LastSeen = &seen
		}
		if r.IntN(5) < 2 {
			d.Name = fmt.Sprintf("%s %s", strings.ToLower(ds.Codes[d.ProductID]), d.Attributes["site"])
		}
		ds.ByState[d.TenantID][d.State]++
	}

	// IDs follow creation time, as ids.New makes them; serials carry the
	// manufacturing week and a per-product, per-week sequence number.
	slices.SortStableFunc(ds.Devices, func(a, b model.Device) int { return a.CreatedAt.Compare(b.CreatedAt) })
	var lastMS uint64
	var lastR [10]byte
	seq := map[string]int{}
	for i := range ds.Devices {
		d := &ds.Devices[i]
		d.ID = nextID(r, "dev", d.CreatedAt, &lastMS, &lastR)
		mfg := d.CreatedAt.Add(-time.Duration(r.IntN(60)) * day)
		y, w := mfg.ISOWeek()
		week := fmt.Sprintf("%s-%02d%02d", ds.Codes[d.ProductID], y%100, w)
		seq[d.ProductID+week]++
		d.Serial = fmt.Sprintf("%s-%06d", week, seq[d.ProductID+week])
	}

	ds.rows = make([]deviceRow, total)
	for i := range ds.Devices {
		d := &ds.Devices[i]
		if d.TenantID == ds.Tenants[0].ID {
			ds.T1 = append(ds.T1, i)
		}
		// Exactly what sqlstore's deviceJSON stores.
		tb, _ := json.Marshal(d.Tags)
		ab, _ := json.Marshal(d.Attributes)
		row := deviceRow{tags: string(tb), attrs: string(ab)}
		if d.FirmwareVersion != "" {
			k, err := model.VersionKey(d.FirmwareVersion)
			if err != nil {
				return nil, err
			}
			row.fwKey = k
		}
		ds.rows[i] = row
		for _, t := range d.Tags {
			ds.TagRows = append(ds.TagRows, TagRow{d.TenantID, t, d.ID})
		}
		for _, k := range slices.Sorted(maps.Keys(d.Attributes)) {
			ds.AttrRows = append(ds.AttrRows, AttrRow{d.TenantID, k, d.Attributes[k], d.ID})
		}
	}
	// Primary-key order, so the loaders append to the B-trees.
	slices.SortFunc(ds.TagRows, func(a, b TagRow) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.tag, b.tag), strings.Compare(a.device, b.device))
	})
	slices.SortFunc(ds.AttrRows, func(a, b AttrRow) int {
		return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.key, b.key),
			strings.Compare(a.value, b.value), strings.Compare(a.device, b.device))
	})
	return ds, nil
}

// The ID format of internal/ids: prefix, "_", 26 Crockford base32
// characters of 48-bit milliseconds and 80 random bits. Made here from the
// device's creation time (ids.New uses the clock) and the seeded generator.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

func mkID(r *rand.Rand, prefix string, at time.Time) string {
	var ms uint64
	var last [10]byte
	return nextID(r, prefix, at, &ms, &last)
}

// nextID keeps IDs strictly increasing like ids.New: within one
// millisecond the random part is incremented.
func nextID(r *rand.Rand, prefix string, at time.Time, lastMS *uint64, lastR *[10]byte) string {
	ms := uint64(at.UnixMilli())
	if ms <= *lastMS {
		ms = *lastMS
		for i := len(lastR) - 1; i >= 0; i-- {
			lastR[i]++
			if lastR[i] != 0 {
				break
			}
		}
	} else {
		*lastMS = ms
		binary.BigEndian.PutUint64(lastR[:8], r.Uint64())
		binary.BigEndian.PutUint16(lastR[8:], uint16(r.Uint32()))
		lastR[0] &= 0x7f
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], lastR[:])
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return prefix + "_" + string(out[:])
}
