package vuln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Rollout is an update campaign that moves devices to a firmware version.
type Rollout struct {
	CampaignID    string `json:"campaign_id"`
	Status        string `json:"status"`
	TargetVersion string `json:"target_version"`
}

// RolloutFinder answers "is a campaign rolling this firmware version out"
// for a product. It is the hook OTA campaigns plug into; until they exist
// the answers carry rollout: null.
type RolloutFinder interface {
	ActiveRollout(ctx context.Context, tenantID, productID, firmwareVersion string) (*Rollout, error)
}

// Service imports SBOMs and advisories and answers exposure questions.
type Service struct {
	st  store.Store
	now func() time.Time
	// Rollouts, when set, tells which fixed firmware is being rolled out.
	Rollouts RolloutFinder
}

// New returns a service over st.
func New(st store.Store) *Service {
	return &Service{st: st, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// ---- SBOMs ----

// SBOMResult is an imported SBOM with what could not be matched.
type SBOMResult struct {
	model.SBOM
	Warnings []string `json:"warnings,omitempty" doc:"Components kept that cannot be matched (e.g. a package URL that does not parse)."`
}

// ImportSBOM parses data (CycloneDX or SPDX JSON) and stores it as the SBOM
// of firmwareVersion of one of the tenant's products, replacing an earlier
// one. Bad input changes nothing.
func (s *Service) ImportSBOM(ctx context.Context, actor, tenantID, productID, firmwareVersion string, data []byte) (*SBOMResult, error) {
	if err := checkFirmwareVersion(firmwareVersion); err != nil {
		return nil, err
	}
	doc, err := ParseSBOM(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	b := &model.SBOM{ID: ids.New("sbm"), TenantID: tenantID, ProductID: productID, FirmwareVersion: firmwareVersion,
		Format: doc.Format, SpecVersion: doc.SpecVersion, Name: doc.Name, Components: len(doc.Components), Unmatched: doc.Unmatched,
		SHA256: hex.EncodeToString(sum[:]), ImportedAt: s.now(), ImportedBy: actor}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutSBOM(ctx, b, doc.Components); err != nil {
			return err
		}
		summary := map[string]any{"firmware_version": firmwareVersion, "format": b.Format, "spec_version": b.SpecVersion,
			"components": b.Components, "components_without_purl": b.Unmatched, "sha256": b.SHA256}
		return auditEmit(ctx, tx, tenantID, actor, "sbom.import", productID, "sbom.imported", summary, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &SBOMResult{SBOM: *b, Warnings: doc.Warnings}, nil
}

// DeleteSBOM removes the SBOM of a firmware version.
func (s *Service) DeleteSBOM(ctx context.Context, actor, tenantID, productID, firmwareVersion string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteSBOM(ctx, tenantID, productID, firmwareVersion); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "sbom.delete", productID, "sbom.deleted",
			map[string]any{"firmware_version": firmwareVersion}, s.now())
	})
}

func checkFirmwareVersion(v string) error {
	if v == "" || len(v) > 64 {
		return inputErr("firmware_version", "must be 1 to 64 characters")
	}
	if _, err := model.VersionKey(v); err != nil {
		return inputErr("firmware_version", "%q: %v", v, err)
	}
	return nil
}

// auditEmit writes the audit record and the event of a change.
func auditEmit(ctx context.Context, tx store.Tx, tenantID, actor, action, target, evType string, summary any, now time.Time) error {
	if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: action, Target: target, Summary: summary}); err != nil {
		return fmt.Errorf("writing the audit record: %w", err)
	}
	data, err := json.Marshal(summary)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: target, Time: now, Data: data})
}

// ---- advisories ----

// ImportAdvisories stores parsed advisories for a tenant ("" =
// platform-wide) in one transaction: a record newer than the stored one
// replaces it, an older or equal one is counted as unchanged.
func (s *Service) ImportAdvisories(ctx context.Context, actor, tenantID string, parsed []Parsed) (*model.AdvisoryImport, error) {
	if len(parsed) == 0 {
		return nil, inputErr("", "no advisories to import")
	}
	res := &model.AdvisoryImport{}
	now := s.now()
	err := s.st.Update(ctx, func(tx store.Tx) error {
		*res = model.AdvisoryImport{}
		for i := range parsed {
			a := parsed[i].Advisory
			a.TenantID, a.ImportedAt, a.ImportedBy = tenantID, now, actor
			aff := slices.Clone(parsed[i].Affected)
			for j := range aff {
				aff[j].TenantID = tenantID
			}
			existed := false
			if prev, err := tx.GetAdvisories(ctx, tenantID, a.ID); err == nil {
				for _, p := range prev {
					existed = existed || (p.TenantID == tenantID && p.ID == a.ID)
				}
			}
			changed, err := tx.PutAdvisory(ctx, &a, aff)
			if err != nil {
				return err
			}
			switch {
			case !changed:
				res.Unchanged++
				continue
			case existed:
				res.Updated++
			default:
				res.Added++
			}
			if len(res.IDs) < 100 {
				res.IDs = append(res.IDs, a.ID)
			}
		}
		return auditEmit(ctx, tx, tenantID, actor, "advisory.import", "advisories", "advisories.imported", res, now)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ---- exposure ----

// DeviceAdvisory is one advisory that affects a device's firmware.
type DeviceAdvisory struct {
	AdvisoryID string   `json:"advisory_id"`
	Aliases    []string `json:"aliases"`
	Summary    string   `json:"summary,omitempty"`
	Severity   string   `json:"severity"`
	Packages   []Hit    `json:"packages" doc:"The device's components the advisory affects."`
	// FixedFirmware is the lowest newer firmware version of the product
	// whose SBOM the advisory does not affect.
	FixedFirmware string   `json:"fixed_firmware_version,omitempty" doc:"Lowest newer firmware version (with an SBOM) that the advisory does not affect."`
	Rollout       *Rollout `json:"rollout" doc:"The campaign rolling the fixed firmware out; null when none (or before OTA campaigns exist)."`
}

// DeviceReport answers "which advisories affect this device".
type DeviceReport struct {
	DeviceID        string           `json:"device_id"`
	ProductID       string           `json:"product_id"`
	FirmwareVersion string           `json:"firmware_version,omitempty"`
	HasSBOM         bool             `json:"has_sbom" doc:"Whether the product has an SBOM for the device's firmware version; without one nothing can be said."`
	Components      int              `json:"components_checked"`
	Items           []DeviceAdvisory `json:"items"`
}

// DeviceVulnerabilities lists the advisories that affect the firmware the
// device runs, most severe first.
func (s *Service) DeviceVulnerabilities(ctx context.Context, tenantID, deviceID string) (*DeviceReport, error) {
	d, err := s.st.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	comps, err := s.st.DeviceFirmwareComponents(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	rep := &DeviceReport{DeviceID: d.ID, ProductID: d.ProductID, FirmwareVersion: d.FirmwareVersion, HasSBOM: len(comps) > 0,
		Items: []DeviceAdvisory{}}
	if d.FirmwareVersion != "" && len(comps) == 0 {
		// An SBOM without components still counts as present.
		if vs, err := s.st.ProductFirmwareVersions(ctx, tenantID, d.ProductID); err == nil {
			rep.HasSBOM = slices.Contains(vs, d.FirmwareVersion)
		}
	}
	rep.Components = len(comps)
	affected, err := s.st.AffectedPackages(ctx, tenantID, PackageKeys(comps))
	if err != nil {
		return nil, err
	}
	hits, err := MatchComponents(comps, affected)
	if err != nil {
		return nil, err
	}
	fw := model.FirmwareRef{ProductID: d.ProductID, FirmwareVersion: d.FirmwareVersion}
	byAdv := map[string][]Hit{}
	var order []string
	for _, h := range hits[fw] {
		if _, ok := byAdv[h.AdvisoryID]; !ok {
			order = append(order, h.AdvisoryID)
		}
		byAdv[h.AdvisoryID] = append(byAdv[h.AdvisoryID], h)
	}
	fixed, err := s.fixedFirmware(ctx, tenantID, d.ProductID, d.FirmwareVersion, order)
	if err != nil {
		return nil, err
	}
	for _, id := range order {
		item := DeviceAdvisory{AdvisoryID: id, Aliases: []string{}, Packages: byAdv[id], Severity: byAdv[id][0].Severity,
			FixedFirmware: fixed[id]}
		if advs, err := s.st.GetAdvisories(ctx, tenantID, id); err == nil {
			item.Aliases, item.Summary = advs[0].Aliases, advs[0].Summary
		}
		if item.FixedFirmware != "" && s.Rollouts != nil {
			if r, err := s.Rollouts.ActiveRollout(ctx, tenantID, d.ProductID, item.FixedFirmware); err == nil {
				item.Rollout = r
			}
		}
		rep.Items = append(rep.Items, item)
	}
	sortAdvisories(rep.Items)
	return rep, nil
}

func sortAdvisories(items []DeviceAdvisory) {
	sort.SliceStable(items, func(i, j int) bool {
		ri, rj := model.Severity(items[i].Severity).Rank(), model.Severity(items[j].Severity).Rank()
		if ri != rj {
			return ri > rj
		}
		return items[i].AdvisoryID < items[j].AdvisoryID
	})
}

// fixedFirmware finds, per advisory, the lowest firmware version of the
// product above current whose SBOM none of the advisory's entries affect.
func (s *Service) fixedFirmware(ctx context.Context, tenantID, productID, current string, advisoryIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(advisoryIDs) == 0 {
		return out, nil
	}
	versions, err := s.st.ProductFirmwareVersions(ctx, tenantID, productID)
	if err != nil {
		return nil, err
	}
	var newer []string
	for _, v := range versions {
		if compareFirmware(v, current) > 0 {
			newer = append(newer, v)
		}
	}
	if len(newer) == 0 {
		return out, nil
	}
	slices.SortFunc(newer, compareFirmware)
	affected, err := s.st.AdvisoryAffected(ctx, tenantID, advisoryIDs)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for _, a := range affected {
		keys[BaseEcosystem(a.Ecosystem)+"/"+a.Package] = true
	}
	comps, err := s.st.ProductFirmwareComponents(ctx, tenantID, productID, mapKeys(keys))
	if err != nil {
		return nil, err
	}
	hits, err := MatchComponents(comps, affected)
	if err != nil {
		return nil, err
	}
	for _, id := range advisoryIDs {
		for _, v := range newer {
			hit := false
			for _, h := range hits[model.FirmwareRef{ProductID: productID, FirmwareVersion: v}] {
				if h.AdvisoryID == id {
					hit = true
					break
				}
			}
			if !hit {
				out[id] = v
				break
			}
		}
	}
	return out, nil
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compareFirmware orders firmware versions numerically per component
// (1.10 > 1.9), as the fleet query does; text that is not a version
// compares as text.
func compareFirmware(a, b string) int {
	ka, ea := model.VersionKey(a)
	kb, eb := model.VersionKey(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	return strings.Compare(ka, kb)
}

// FirmwareExposure is one firmware version an advisory affects.
type FirmwareExposure struct {
	ProductID       string   `json:"product_id"`
	FirmwareVersion string   `json:"firmware_version"`
	Packages        []Hit    `json:"packages"`
	FixedFirmware   string   `json:"fixed_firmware_version,omitempty"`
	Rollout         *Rollout `json:"rollout"`
}

// Exposure answers "which devices are exposed to this advisory".
type Exposure struct {
	Advisories []model.Advisory   `json:"advisories" doc:"The records the ID or alias names."`
	Firmware   []FirmwareExposure `json:"firmware" doc:"Affected firmware versions that the tenant's devices run."`
	Items      []ExposedDevice    `json:"items"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

// ExposedDevice is a device running affected firmware.
type ExposedDevice struct {
	ID              string      `json:"id"`
	Serial          string      `json:"serial"`
	Name            string      `json:"name,omitempty"`
	ProductID       string      `json:"product_id"`
	FirmwareVersion string      `json:"firmware_version"`
	State           model.State `json:"state"`
}

// ErrTooManyFirmware: an advisory affects more firmware versions than one
// answer can list devices for.
var ErrTooManyFirmware = errors.New("the advisory affects more than 500 firmware versions; ask per product")

// Exposure finds the tenant's devices whose firmware an advisory (by ID or
// alias, e.g. a CVE) affects, one page at a time.
func (s *Service) Exposure(ctx context.Context, tenantID, idOrAlias string, o store.ListOptions) (*Exposure, error) {
	advs, err := s.st.GetAdvisories(ctx, tenantID, idOrAlias)
	if err != nil {
		return nil, err
	}
	out := &Exposure{Firmware: []FirmwareExposure{}, Items: []ExposedDevice{}}
	var advIDs []string
	for _, a := range advs {
		a.Record = nil
		out.Advisories = append(out.Advisories, a)
		advIDs = append(advIDs, a.ID)
	}
	affected, err := s.st.AdvisoryAffected(ctx, tenantID, advIDs)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for _, a := range affected {
		keys[BaseEcosystem(a.Ecosystem)+"/"+a.Package] = true
	}
	var fws []model.FirmwareRef
	if len(keys) > 0 {
		comps, err := s.st.RunningFirmwareComponents(ctx, tenantID, mapKeys(keys))
		if err != nil {
			return nil, err
		}
		hits, err := MatchComponents(comps, affected)
		if err != nil {
			return nil, err
		}
		for fw := range hits {
			fws = append(fws, fw)
		}
		slices.SortFunc(fws, func(a, b model.FirmwareRef) int {
			if c := strings.Compare(a.ProductID, b.ProductID); c != 0 {
				return c
			}
			return compareFirmware(a.FirmwareVersion, b.FirmwareVersion)
		})
		if len(fws) > 500 {
			return nil, ErrTooManyFirmware
		}
		for _, fw := range fws {
			fe := FirmwareExposure{ProductID: fw.ProductID, FirmwareVersion: fw.FirmwareVersion, Packages: hits[fw]}
			fixed, err := s.fixedFirmware(ctx, tenantID, fw.ProductID, fw.FirmwareVersion, advIDs)
			if err != nil {
				return nil, err
			}
			// Fixed means fixed for every record the alias names.
			fe.FixedFirmware = commonFix(fixed, advIDs)
			if fe.FixedFirmware != "" && s.Rollouts != nil {
				if r, err := s.Rollouts.ActiveRollout(ctx, tenantID, fw.ProductID, fe.FixedFirmware); err == nil {
					fe.Rollout = r
				}
			}
			out.Firmware = append(out.Firmware, fe)
		}
	}
	devs, next, err := s.st.DevicesRunning(ctx, tenantID, fws, o)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		out.Items = append(out.Items, ExposedDevice{ID: d.ID, Serial: d.Serial, Name: d.Name, ProductID: d.ProductID,
			FirmwareVersion: d.FirmwareVersion, State: d.State})
	}
	out.NextCursor = next
	return out, nil
}

// commonFix is the highest of the per-advisory fixes when every advisory
// has one, else "".
func commonFix(fixed map[string]string, ids []string) string {
	best := ""
	for _, id := range ids {
		f, ok := fixed[id]
		if !ok {
			return ""
		}
		if best == "" || compareFirmware(f, best) > 0 {
			best = f
		}
	}
	return best
}

// FirmwareHits matches every firmware the tenant's devices run (that has
// an SBOM) against the advisories the tenant sees.
func (s *Service) FirmwareHits(ctx context.Context, tenantID string) (map[model.FirmwareRef][]Hit, error) {
	comps, err := s.st.RunningFirmwareComponents(ctx, tenantID, nil)
	if err != nil {
		return nil, err
	}
	affected, err := s.st.AffectedPackages(ctx, tenantID, PackageKeys(comps))
	if err != nil {
		return nil, err
	}
	return MatchComponents(comps, affected)
}
