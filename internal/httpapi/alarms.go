package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// The kind enum lists model.AlarmKinds (a test compares them).
type alarmListIn struct {
	PageIn
	State    string `query:"state" enum:"active,acknowledged,cleared,open" doc:"Only alarms in this state; open = active or acknowledged. Default: all."`
	Kind     string `query:"kind" enum:"message_rate,byte_rate,auth_failures,connection_churn,new_source_addresses,message_rate_anomaly,byte_rate_anomaly,new_listening_ports,new_outbound_destinations,outbound_outside_profile,process_count_jump" doc:"Only alarms of this kind."`
	DeviceID string `query:"device_id" maxLength:"64" doc:"Only alarms of this device."`
}

type deviceAlarmListIn struct {
	PageIn
	State    string `query:"state" enum:"active,acknowledged,cleared,open" doc:"Only alarms in this state; open = active or acknowledged. Default: all."`
	Kind     string `query:"kind" enum:"message_rate,byte_rate,auth_failures,connection_churn,new_source_addresses,message_rate_anomaly,byte_rate_anomaly,new_listening_ports,new_outbound_destinations,outbound_outside_profile,process_count_jump" doc:"Only alarms of this kind."`
	DeviceID string `path:"deviceID" maxLength:"64"`
}

type alarmList struct {
	Body struct {
		Items      []model.Alarm `json:"items"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}
}

type alarmIDIn struct {
	AlarmID string `path:"alarmID" maxLength:"64"`
}

type alarmOut struct{ Body *model.Alarm }

type alarmAckIn struct {
	AlarmID string `path:"alarmID" maxLength:"64"`
	Body    struct {
		Note string `json:"note,omitempty" maxLength:"1024" doc:"What the operator found or did; kept in the audit trail."`
	}
}

func alarmErr(err error, id string) error {
	var se *alarm.StateError
	var ie *alarm.InvalidError
	switch {
	case errors.As(err, &se):
		return huma.Error409Conflict(se.Error())
	case errors.As(err, &ie):
		return huma.Error422UnprocessableEntity(ie.Error(), &huma.ErrorDetail{Location: "body." + ie.Field, Message: ie.Message})
	}
	return notFoundAs(err, "alarm", id)
}

func (a *API) routesAlarms() {
	svc := a.Security.Alarms
	reg(a, huma.Operation{OperationID: "listAlarms", Method: http.MethodGet, Path: Prefix + "/alarms",
		Summary: "List the tenant's behaviour alarms, newest first",
		Description: "Alarms are raised by behaviour detection (rules and learned per-device baselines, docs/security.md): " +
			"one open alarm per device and kind, active until acknowledged, cleared when the metric is back to normal."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *alarmListIn) (*alarmList, error) {
			return listAlarms(ctx, a.Store, model.AlarmQuery{State: in.State, Kind: model.AlarmKind(in.Kind), DeviceID: in.DeviceID},
				in.PageIn)
		})
	reg(a, huma.Operation{OperationID: "getAlarm", Method: http.MethodGet, Path: Prefix + "/alarms/{alarmID}",
		Summary: "Get an alarm with its evidence and mitigation"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *alarmIDIn) (*alarmOut, error) {
			al, err := a.Store.GetAlarm(ctx, tenantOf(ctx), in.AlarmID)
			if err != nil {
				return nil, notFoundAs(err, "alarm", in.AlarmID)
			}
			return &alarmOut{al}, nil
		})
	reg(a, huma.Operation{OperationID: "acknowledgeAlarm", Method: http.MethodPost, Path: Prefix + "/alarms/{alarmID}/acknowledge",
		Summary: "Acknowledge an active alarm",
		Description: "Records that an operator has seen the alarm (who, when, a note). It stays open until its metric is " +
			"normal for the tenant's clear window. A mitigation is not undone: release a quarantined device with a " +
			"transition to active."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *alarmAckIn) (*alarmOut, error) {
			al, err := svc.Acknowledge(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.AlarmID, in.Body.Note)
			if err != nil {
				return nil, alarmErr(err, in.AlarmID)
			}
			return &alarmOut{al}, nil
		})
	reg(a, huma.Operation{OperationID: "listDeviceAlarms", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/alarms",
		Summary: "List a device's behaviour alarms, newest first"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceAlarmListIn) (*alarmList, error) {
			if _, err := a.Store.GetDevice(ctx, tenantOf(ctx), in.DeviceID); err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			return listAlarms(ctx, a.Store, model.AlarmQuery{State: in.State, Kind: model.AlarmKind(in.Kind), DeviceID: in.DeviceID},
				in.PageIn)
		})
}

func listAlarms(ctx context.Context, st store.Store, q model.AlarmQuery, p PageIn) (*alarmList, error) {
	items, next, err := st.ListAlarms(ctx, tenantOf(ctx), q, store.ListOptions{Limit: p.Limit, Cursor: p.Cursor})
	if err != nil {
		return nil, err
	}
	out := &alarmList{}
	out.Body.Items, out.Body.NextCursor = nonNil(items), next
	return out, nil
}

// detectionSettings is what a settings PUT stores as detection settings:
// the body's, checked, or (left out) the tenant's current ones.
func (a *API) detectionSettings(ctx context.Context, in *model.DetectionSettings) (model.DetectionSettings, error) {
	if in == nil {
		cur, err := a.Store.GetSecuritySettings(ctx, tenantOf(ctx))
		return cur.Detection, err
	}
	if err := detect.CheckSettings(*in); err != nil {
		var se *detect.SettingsError
		if errors.As(err, &se) {
			return *in, secErr(&defender.InvalidError{Field: "detection." + se.Field, Message: se.Message})
		}
		return *in, err
	}
	return *in, nil
}

// detectionChanged tells the detector to use a tenant's new settings.
func (a *API) detectionChanged(ctx context.Context, tenantID string) {
	if a.Security.Alarms != nil {
		a.Security.Alarms.SettingsChanged(ctx, tenantID)
	}
}
