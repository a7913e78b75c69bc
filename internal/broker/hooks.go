package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
)

// AppUsername is the MQTT username of an application authenticating with
// an API key (the password).
const AppUsername = "api-key"

// MQTT 5 reason codes the broker answers with, and their 3.1.1 CONNACK
// return codes.
const (
	codeUnspecified   byte = 0x80
	codeClientID      byte = 0x85
	codeBadUserPass   byte = 0x86
	codeNotAuthorized byte = 0x87
	codeUnavailable   byte = 0x88
	codeReceiveMax    byte = 0x93
	codePacketTooBig  byte = 0x95
	codeQuota         byte = 0x97
	codeAdmin         byte = 0x98
	codeBadPayload    byte = 0x99
)

var v3Connack = map[byte]byte{codeClientID: 0x02, codeUnavailable: 0x03, codeBadUserPass: 0x04, codeNotAuthorized: 0x05}

// hook connects mochi's life cycle to the platform.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "steward" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// refusal is a refused connection: the reason code and why.
type refusal struct {
	code   byte
	reason string
	dev    *identity.Device // who it claimed or proved to be, when known
}

// OnConnect authenticates the client. Refusals answer with their own
// CONNACK (mochi's would always say 0x86) and end the connection.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	ctx, cancel := context.WithTimeout(b.ctx, b.d.AuthCheck)
	defer cancel()
	var s *session
	var ref *refusal
	offload(func() { s, ref = b.authenticate(ctx, cl, pk) })
	if ref != nil {
		b.refuseConnect(cl, pk, ref)
		return packets.Code{Code: ref.code, Reason: ref.reason}
	}
	cl.Properties.Will = mqtt.Will{} // wills are not delivered; device.disconnected says it
	if prev := b.reg.device(s.deviceID); s.kind == kindDevice && prev != nil && prev.cl.Net.Remote != "" {
		s.tookOverFrom = prev.cl.Net.Remote // mochi ends the old session after this hook
	}
	b.reg.add(s)
	return nil
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.b.reg.client(cl) != nil
}

func (b *Broker) authenticate(ctx context.Context, cl *mqtt.Client, pk packets.Packet) (*session, *refusal) {
	mode := b.modes[cl.Net.Listener]
	var certs []*x509.Certificate
	if cs, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		certs = cs.ConnectionState().PeerCertificates
	}
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	if cl.Net.Listener == ListenerApp {
		if user != AppUsername {
			return nil, &refusal{code: codeBadUserPass, reason: "applications authenticate with user name " + AppUsername + " and an API key as password"}
		}
		return b.authenticateApp(ctx, cl, pk, pass)
	}
	var dev *identity.Device
	var err error
	switch {
	case mode == authCert || mode == authCertOrToken && len(certs) > 0:
		if len(certs) == 0 {
			return nil, &refusal{code: codeNotAuthorized, reason: "a client certificate issued by the platform CA is required on this listener"}
		}
		dev, err = b.d.Auth.AuthenticateCert(ctx, certs)
		if err != nil {
			return nil, authRefusal(err, true, dev)
		}
	case user == AppUsername:
		return nil, &refusal{code: codeBadUserPass, reason: "applications connect to the application listener (mqtt.app_listen), not to a device listener"}
	default:
		if user == "" {
			return nil, &refusal{code: codeBadUserPass, reason: "user name (the device ID) and password (the device token) are required"}
		}
		dev, err = b.d.Auth.AuthenticateToken(ctx, user, pass)
		if err != nil {
			return nil, authRefusal(err, false, &identity.Device{DeviceID: user})
		}
	}
	if pk.Connect.ClientIdentifier != dev.DeviceID {
		return nil, &refusal{code: codeClientID, dev: dev,
			reason: fmt.Sprintf("client identifier %q must be the device ID %s", pk.Connect.ClientIdentifier, dev.DeviceID)}
	}
	d, err := b.d.Store.GetDevice(ctx, dev.TenantID, dev.DeviceID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, &refusal{code: codeNotAuthorized, dev: dev, reason: "device not found"}
		}
		b.log.Error("mqtt: reading the device at connect", "device", dev.DeviceID, "err", err)
		return nil, &refusal{code: codeUnavailable, dev: dev, reason: "the platform cannot check the device now; retry later"}
	}
	if !identity.MayConnect(d.State) {
		return nil, &refusal{code: codeNotAuthorized, dev: dev, reason: fmt.Sprintf("device is %s and may not connect", d.State)}
	}
	s := &session{cl: cl, kind: kindDevice, tenantID: dev.TenantID, deviceID: dev.DeviceID, method: dev.Method,
		certSerial: dev.CertSerial, listener: cl.Net.Listener, connectedAt: b.now()}
	if dev.Method == identity.MethodToken {
		s.token = pass // kept to re-check the session when the device's token changes
	}
	s.quarantined.Store(d.State == model.StateQuarantined)
	s.shard = b.shards.Add(1)
	s.det = b.detectDevice(ctx, dev.TenantID, dev.DeviceID)
	return s, nil
}

// authRefusal maps an Authenticator error onto a reason code.
func authRefusal(err error, cert bool, dev *identity.Device) *refusal {
	what := "device token"
	if cert {
		what = "certificate"
	}
	switch {
	case errors.Is(err, identity.ErrRevoked):
		return &refusal{code: codeNotAuthorized, dev: dev, reason: what + " revoked"}
	case errors.Is(err, identity.ErrExpired):
		return &refusal{code: codeNotAuthorized, dev: dev, reason: what + " expired or not yet valid"}
	case errors.Is(err, identity.ErrNotAllowed):
		reason := "device may not connect in its current state"
		if _, detail, ok := strings.Cut(err.Error(), identity.ErrNotAllowed.Error()+": "); ok {
			reason += " (" + detail + ")"
		}
		return &refusal{code: codeNotAuthorized, dev: dev, reason: reason}
	case errors.Is(err, identity.ErrUnknownIdentity) && cert:
		return &refusal{code: codeNotAuthorized, dev: dev, reason: "certificate not issued by this platform's CA or not a known device certificate"}
	case errors.Is(err, identity.ErrUnknownIdentity):
		return &refusal{code: codeBadUserPass, dev: dev, reason: "unknown device or wrong device token"}
	}
	return &refusal{code: codeUnavailable, dev: dev, reason: "the platform cannot check the credential now; retry later: " + err.Error()}
}

func (b *Broker) authenticateApp(ctx context.Context, cl *mqtt.Client, pk packets.Packet, secret string) (*session, *refusal) {
	bad := &refusal{code: codeBadUserPass, reason: "not a valid API key (unknown, revoked or expired)"}
	prefix, err := authz.ParseKey(secret)
	if err != nil {
		return nil, bad
	}
	k, err := b.d.Store.GetAPIKeyByPrefix(ctx, prefix)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, bad
		}
		return nil, &refusal{code: codeUnavailable, reason: "the platform cannot check the key now; retry later"}
	}
	if err := authz.CheckKey(secret, k, b.now()); err != nil {
		return nil, bad
	}
	if !authz.Allowed(k.Role, authz.DevicesRead) {
		return nil, &refusal{code: codeNotAuthorized, reason: fmt.Sprintf("role %s may not read device traffic", k.Role)}
	}
	if !strings.HasPrefix(pk.Connect.ClientIdentifier, k.ID) {
		return nil, &refusal{code: codeClientID, reason: "an application's client identifier must start with its API key ID " + k.ID}
	}
	return &session{cl: cl, kind: kindApp, tenantID: k.TenantID, keyID: k.ID, method: "api-key",
		listener: cl.Net.Listener, connectedAt: b.now()}, nil
}

func (b *Broker) refuseConnect(cl *mqtt.Client, pk packets.Packet, r *refusal) {
	code := packets.Code{Code: r.code, Reason: r.reason}
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Code{Code: v3Connack[r.code], Reason: r.reason}
	}
	if err := b.server(cl).SendConnack(cl, code, false, nil); err != nil {
		b.log.Debug("mqtt: sending the refusal", "err", err)
	}
	var tenant, device, serial string
	if r.dev != nil {
		tenant, device, serial = r.dev.TenantID, r.dev.DeviceID, r.dev.CertSerial
	}
	b.m.authFailures.WithLabelValues(fmt.Sprintf("0x%02x", r.code)).Inc()
	b.detectAuthFailure(tenant, device)
	b.log.Info("mqtt connection refused", "listener", cl.Net.Listener, "remote", cl.Net.Remote,
		"client_id", pk.Connect.ClientIdentifier, "device", device, "code", fmt.Sprintf("0x%02x", r.code), "reason", r.reason)
	b.note(note{kind: noteAuthFailed, tenantID: tenant, deviceID: device, at: b.now(), data: map[string]any{
		"device_id": device, "client_id": pk.Connect.ClientIdentifier, "reason": r.reason, "code": r.code,
		"remote": cl.Net.Remote, "listener": cl.Net.Listener, "cert_serial": serial,
		"protocol_version": cl.Properties.ProtocolVersion}})
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	b := h.b
	s := b.reg.client(cl)
	if s == nil {
		return
	}
	b.m.connects.WithLabelValues(s.listener).Inc()
	if s.kind != kindDevice {
		b.log.Info("mqtt application connected", "key", s.keyID, "tenant", s.tenantID, "remote", cl.Net.Remote)
		return
	}
	tookOverFrom := s.tookOverFrom
	if prev := b.reg.device(s.deviceID); tookOverFrom == "" && prev != nil && prev != s && prev.cl.Net.Remote != "" {
		tookOverFrom = prev.cl.Net.Remote // a second connection with the same identity
	}
	b.reg.activate(s)
	if s.det != nil {
		s.det.Connected(cl.Net.Remote)
	}
	if b.d.OnPresence != nil {
		b.d.OnPresence(s.tenantID, s.deviceID, true)
	}
	// A state change routed while the device was between its credential
	// check and here found no session: read the state once more.
	b.scheduleAlways(job{kind: jobState, s: s})
	b.m.online.Set(float64(b.Online()))
	b.log.Debug("mqtt device connected", "device", s.deviceID, "listener", s.listener, "remote", cl.Net.Remote)
	b.note(note{kind: noteConnected, tenantID: s.tenantID, deviceID: s.deviceID, at: s.connectedAt, data: map[string]any{
		"device_id": s.deviceID, "method": s.method, "listener": s.listener, "remote": cl.Net.Remote,
		"protocol_version": cl.Properties.ProtocolVersion, "cert_serial": s.certSerial, "node": b.cfg.Node,
		"quarantined": s.quarantined.Load(), "took_over_from": tookOverFrom}})
	s.lastTouch = s.connectedAt
	b.note(note{kind: noteTouch, tenantID: s.tenantID, deviceID: s.deviceID, at: s.connectedAt})
	if cl.State.Subscriptions.Len() > 0 { // a persistent session kept its subscriptions
		b.schedule(job{kind: jobReconnect, s: s})
	}
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	b := h.b
	s := b.reg.client(cl)
	if s == nil {
		return
	}
	current := b.reg.remove(s)
	if s.kind != kindDevice {
		return
	}
	if !current {
		b.log.Debug("mqtt session taken over", "device", s.deviceID)
		return
	}
	b.m.online.Set(float64(b.Online()))
	reason := "client disconnected"
	if err != nil {
		reason = err.Error()
	} else if c := cl.StopCause(); c != nil {
		reason = c.Error()
	}
	now := b.now()
	b.log.Debug("mqtt device disconnected", "device", s.deviceID, "reason", reason)
	b.note(note{kind: noteDisconnected, tenantID: s.tenantID, deviceID: s.deviceID, at: now, data: map[string]any{
		"device_id": s.deviceID, "reason": reason, "connected_seconds": int64(now.Sub(s.connectedAt).Seconds()), "node": b.cfg.Node}})
	b.note(note{kind: noteTouch, tenantID: s.tenantID, deviceID: s.deviceID, at: now})
	if b.reg.device(s.deviceID) == nil {
		b.dropTwin(s.deviceID)
		if b.d.OnPresence != nil {
			b.d.OnPresence(s.tenantID, s.deviceID, false)
		}
	}
}

// OnACLCheck decides every publish, subscribe filter and delivery.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	b := h.b
	s := b.reg.client(cl)
	if s == nil {
		return false
	}
	if s.kind == kindApp {
		return !write && b.appMayRead(s, topic)
	}
	q := s.quarantined.Load()
	var ok bool
	if write {
		ok = deviceMayPublish(s.deviceID, topic, q)
	} else {
		ok = deviceMaySubscribe(s.deviceID, topic, q)
	}
	if !ok {
		what := "subscribe to"
		if write {
			what = "publish to"
			if s.det != nil { // refused publishes count too: a quarantined flood stays visible
				s.det.Message(0)
			}
		}
		reason := fmt.Sprintf("not allowed to %s %q: a device may only use the topics of docs/protocol.md under d/%s/", what, topic, s.deviceID)
		if q {
			reason = fmt.Sprintf("not allowed to %s %q: the device is quarantined and may only use d/%s/ota/", what, topic, s.deviceID)
		}
		b.m.refused.WithLabelValues("0x87").Inc()
		b.report(s, topic, codeNotAuthorized, reason)
	}
	return ok
}

// appMayRead: filters of the allowed forms; concrete topics only of the
// application's tenant.
func (b *Broker) appMayRead(s *session, topic string) bool {
	id, rest, ok := splitDevice(topic)
	if !ok || !appTopicAllowed(rest) || strings.Contains(id, "#") || strings.Contains(id, "+") && id != "+" {
		return false
	}
	if id == "+" || s.tenantID == "" {
		return true
	}
	if ds := b.reg.device(id); ds != nil {
		return ds.tenantID == s.tenantID
	}
	// A filter naming a device that is not connected here.
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	_, err := b.d.Store.GetDevice(ctx, s.tenantID, id)
	return err == nil
}

// appTopicAllowed accepts the application filters and the topics they match.
func appTopicAllowed(rest string) bool {
	if appFilters[rest] {
		return true
	}
	if r, ok := strings.CutPrefix(rest, "commands/"); ok {
		id, ok := strings.CutSuffix(r, "/result")
		return ok && id != "" && !strings.ContainsAny(id, "/#")
	}
	return false
}

func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	b := h.b
	s := b.reg.client(cl)
	if s == nil || s.kind != kindDevice || s.quarantined.Load() {
		return pk
	}
	for _, f := range pk.Filters {
		if deviceMaySubscribe(s.deviceID, f.Filter, false) &&
			(matchFilter(f.Filter, DeviceTopic(s.deviceID, topicTwinDesired)) || matchFilter(f.Filter, DeviceTopic(s.deviceID, topicTwinDelta))) {
			offload(func() { b.loadTwin(s) })
			break
		}
	}
	return pk
}

func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	b := h.b
	s := b.reg.client(cl)
	if s == nil || s.kind != kindDevice {
		return
	}
	probe, otaTopic := CommandTopic(s.deviceID, "x"), DeviceTopic(s.deviceID, topicOTAAssignment)
	cmds, upd := false, false
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			cmds = cmds || matchFilter(f.Filter, probe)
			upd = upd || matchFilter(f.Filter, otaTopic)
		}
	}
	if cmds {
		b.schedule(job{kind: jobCommands, s: s})
	}
	if upd {
		b.schedule(job{kind: jobOTA, s: s})
	}
}

// OnPacketEncode tells MQTT 5 clients the limits in the CONNACK.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 && cl.Properties.ProtocolVersion == 5 {
		pk.Properties.MaximumPacketSize = uint32(h.b.cfg.MaxPayload + 4096)
		pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
		pk.Properties.SubIDAvailable, pk.Properties.SubIDAvailableFlag = 0, true
	}
	return pk
}

// OnPublish handles what a device publishes. Returning the packet lets
// mochi acknowledge it (for QoS 1 only after this returns, so after the
// database write) and deliver it to application subscribers; a refusal
// answers itself and returns ErrRejectPacket.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	b := h.b
	s := b.reg.client(cl)
	if s == nil || s.kind != kindDevice {
		return pk, packets.ErrRejectPacket
	}
	pk.FixedHeader.Retain = false // devices' retained messages are not kept
	now := b.now()
	if len(pk.Payload) > b.cfg.MaxPayload {
		reason := fmt.Sprintf("payload of %d bytes is larger than the limit of %d", len(pk.Payload), b.cfg.MaxPayload)
		b.m.refused.WithLabelValues("0x95").Inc()
		b.log.Info("mqtt message refused", "device", s.deviceID, "topic", pk.TopicName, "code", "0x95", "reason", reason)
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.srv.DisconnectClient(cl, packets.Code{Code: codePacketTooBig, Reason: reason})
		} else {
			cl.Stop(packets.Code{Code: codePacketTooBig, Reason: reason})
		}
		return pk, packets.ErrRejectPacket
	}
	if s.det != nil { // before the rate limit: a flood counts in full
		s.det.Message(len(pk.Payload))
	}
	if !s.allow(&b.cfg, now, len(pk.Payload)) {
		return pk, b.refuse(s, pk, codeQuota, fmt.Sprintf("rate limit: at most %.0f messages and %.0f bytes per second", b.cfg.RateLimit, b.cfg.ByteRate))
	}
	if s.due(&s.lastTouch, now, b.cfg.TouchEvery) {
		b.note(note{kind: noteTouch, tenantID: s.tenantID, deviceID: s.deviceID, at: now})
	}
	_, rest, _ := splitDevice(pk.TopicName)
	k, reqID := classify(rest)
	telemetryMsg := k == inTelemetry || k == inTelemetrySenML
	if pk.FixedHeader.Qos > 0 && !telemetryMsg {
		s.ackWait(b.ctx) // PUBACKs go out in the order the device published
	}
	// Store calls of a message wait at most 15 s. Telemetry is handed to
	// the ingester, whose queue bounds its own wait: no timer per message
	// on the hot path.
	ctx := b.ctx
	if !telemetryMsg || pk.FixedHeader.Qos > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(b.ctx, 15*time.Second)
		defer cancel()
	}
	switch k {
	case inTelemetry, inTelemetrySenML:
		senml := k == inTelemetrySenML || pk.Properties.ContentType == "application/senml+json"
		tps, err := telemetry.Decode(pk.Payload, senml, now)
		if err != nil {
			return pk, b.refuse(s, pk, codeBadPayload, err.Error())
		}
		for i := range tps {
			tps[i].TenantID, tps[i].DeviceID = s.tenantID, s.deviceID
		}
		switch pk.FixedHeader.Qos {
		case 0:
			err = b.d.Ingester.Enqueue(ctx, tps)
		case 1:
			// Acknowledged by the acker once the points are durable
			// (committed, or stored in the telemetry stream), not here:
			// the connection goes on reading meanwhile. Delivery to
			// subscribers does not wait for the database.
			// At most Receive Maximum of them: an MQTT 5 device that
			// sends more is disconnected (it was told the limit); a 3.1.1
			// device, which was not, is read from again once PUBACKs
			// have gone out, or given up on as the ingester's full queue
			// would be.
			v5 := cl.Properties.ProtocolVersion == 5
			if !s.owe(b.ctx, int(b.cfg.ReceiveMaximum), !v5, time.Now().Add(ackWaitMax)) {
				if !v5 {
					return pk, b.storeFailed(s, pk, telemetry.ErrBusy)
				}
				reason := fmt.Sprintf("more than %d QoS 1 messages without a PUBACK (Receive Maximum)", b.cfg.ReceiveMaximum)
				b.m.refused.WithLabelValues(fmt.Sprintf("0x%02x", codeReceiveMax)).Inc()
				b.log.Info("mqtt message refused", "device", s.deviceID, "topic", pk.TopicName, "code", "0x93", "reason", reason)
				_ = b.srv.DisconnectClient(cl, packets.Code{Code: codeReceiveMax, Reason: reason})
				return pk, packets.ErrRejectPacket
			}
			id := pk.PacketID
			if err = b.d.Ingester.WriteThen(ctx, tps, func(err error) {
				b.acker.push(ackJob{s: s, packetID: id, err: err})
			}); err != nil {
				s.paid()
				s.ackDone()
			}
		default:
			err = b.d.Ingester.Write(ctx, tps) // QoS 2: PUBREC once durable
		}
		if err != nil {
			return pk, b.storeFailed(s, pk, err)
		}
		b.m.telemetry.Inc()
		if pk.FixedHeader.Qos < 2 {
			// QoS 1 is acknowledged by the acker, QoS 0 not at all, and
			// nobody on the device listeners reads another device's
			// telemetry: mochi has nothing left to do (it would look for
			// subscribers; a device is not sent its own telemetry back).
			b.toApps(pk.TopicName, pk.Payload, pk.FixedHeader.Qos)
			return pk, packets.ErrRejectPacket
		}
	case inTwinReported:
		var tw *model.Twin
		var err error
		payload := pk.Payload // a closure naming pk would move every packet to the heap
		offload(func() { tw, err = b.d.Twin.Report(ctx, s.tenantID, s.deviceID, payload) })
		var inv *twin.InvalidError
		if errors.As(err, &inv) {
			return pk, b.refuse(s, pk, codeBadPayload, inv.Error())
		}
		if err != nil {
			return pk, b.storeFailed(s, pk, err)
		}
		b.m.messages.WithLabelValues("twin").Inc()
		b.publishTwin(s, tw, false)
	case inTwinGet:
		var tw *model.Twin
		var err error
		offload(func() { tw, err = b.d.Twin.Get(ctx, s.tenantID, s.deviceID) })
		if err != nil {
			return pk, b.storeFailed(s, pk, err)
		}
		b.publishTwin(s, tw, true)
	case inCommandResult:
		r, err := commands.ParseResult(pk.Payload)
		if err != nil {
			return pk, b.refuse(s, pk, codeBadPayload, err.Error())
		}
		offload(func() { _, err = b.d.Commands.Complete(ctx, s.tenantID, s.deviceID, reqID, r) })
		var re *commands.ResultError
		if errors.As(err, &re) {
			return pk, b.refuse(s, pk, codeUnspecified, re.Error())
		}
		if err != nil {
			return pk, b.storeFailed(s, pk, err)
		}
		b.m.messages.WithLabelValues("command_result").Inc()
	case inOTAStatus:
		if err := b.otaStatus(ctx, s, pk); err != nil {
			return pk, err
		}
		b.m.messages.WithLabelValues("ota_status").Inc()
	case inSecurityMetrics:
		if err := b.securityMetrics(ctx, s, pk); err != nil {
			return pk, err
		}
		b.m.messages.WithLabelValues(strings.ReplaceAll(rest, "/", "_")).Inc()
	case inNeighbours:
		if b.d.Neighbours == nil {
			return pk, b.refuse(s, pk, codeNotAuthorized, "this platform does not take neighbour reports")
		}
		var err error
		payload := pk.Payload // as above
		offload(func() { _, err = b.d.Neighbours.ReportPayload(ctx, s.tenantID, s.deviceID, payload) })
		var inv *discovery.InvalidError
		if errors.As(err, &inv) {
			return pk, b.refuse(s, pk, codeBadPayload, inv.Error())
		}
		if err != nil {
			return pk, b.storeFailed(s, pk, err)
		}
		b.m.messages.WithLabelValues("neighbours").Inc()
	default: // the ACL lets nothing else through
		return pk, b.refuse(s, pk, codeNotAuthorized, "not a topic a device may publish to")
	}
	if k != inTwinGet {
		b.toApps(pk.TopicName, pk.Payload, pk.FixedHeader.Qos)
	}
	return pk, nil
}

// offload runs fn on a short-lived goroutine and waits for it. Database
// calls (the SQLite driver has deep stacks) then grow that goroutine's
// stack, not the connection's, which lives long and is mostly idle: its
// stack is most of what an idle connection costs.
func offload(fn func()) {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
}

func jsonObject(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil || m == nil {
		return errors.New("payload must be a JSON object")
	}
	if dec.More() {
		return errors.New("payload has data after the JSON object")
	}
	return nil
}

// refuse answers a refused message: MQTT 5 QoS > 0 gets the reason code
// in its PUBACK (or PUBREC); a 3.1.1 QoS > 0 message is acknowledged so
// that it is not sent again; every case gets a report on d/{id}/errors.
func (b *Broker) refuse(s *session, pk packets.Packet, code byte, reason string) error {
	b.m.refused.WithLabelValues(fmt.Sprintf("0x%02x", code)).Inc()
	if pk.FixedHeader.Qos > 0 {
		s.ackWait(b.ctx)
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
		if pk.FixedHeader.Qos == 2 {
			ack.FixedHeader.Type = packets.Pubrec
		}
		if s.cl.Properties.ProtocolVersion == 5 {
			ack.ReasonCode = code
			ack.Properties.ReasonString = reason
		}
		if err := s.cl.WritePacket(ack); err != nil {
			b.log.Debug("mqtt: acknowledging a refused message", "device", s.deviceID, "err", err)
		}
	}
	b.report(s, pk.TopicName, code, reason)
	return packets.ErrRejectPacket
}

// report logs a refusal and tells the device on d/{id}/errors, at most
// once a second per device.
func (b *Broker) report(s *session, topic string, code byte, reason string) {
	now := b.now()
	if !s.due(&s.lastReport, now, time.Second) {
		return
	}
	b.log.Info("mqtt message refused", "device", s.deviceID, "topic", topic, "code", fmt.Sprintf("0x%02x", code), "reason", reason)
	msg, _ := json.Marshal(map[string]any{"topic": topic, "code": code, "reason": reason, "at": now.Format(time.RFC3339Nano)})
	if err := b.srv.Publish(DeviceTopic(s.deviceID, topicErrors), msg, false, 0); err != nil {
		b.log.Debug("mqtt: error report", "err", err)
	}
}

// storeFailed: the platform could not take the message. MQTT 5 QoS > 0
// gets 0x80 (the client may retry); a 3.1.1 client is disconnected
// without an acknowledgement, so that it sends the message again.
func (b *Broker) storeFailed(s *session, pk packets.Packet, err error) error {
	b.log.Error("mqtt: could not handle a device message", "device", s.deviceID, "topic", pk.TopicName, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	if s.cl.Properties.ProtocolVersion == 5 {
		return b.refuse(s, pk, codeUnspecified, "the platform could not store the message; send it again")
	}
	s.cl.Stop(errors.New("the platform could not store a message"))
	return packets.ErrRejectPacket
}

// ---- twin documents in the broker's retained index ----

// loadTwin puts the device's desired and delta documents into the
// retained index, so that a subscription receives them after its SUBACK.
func (b *Broker) loadTwin(s *session) {
	s.mu.Lock()
	loaded := s.twinLoaded
	s.mu.Unlock()
	if loaded {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	tw, err := b.d.Twin.Get(ctx, s.tenantID, s.deviceID)
	if err != nil {
		b.log.Warn("mqtt: loading the twin", "device", s.deviceID, "err", err)
		return
	}
	now := time.Now().Unix()
	for _, m := range []struct{ topic, payload string }{
		{DeviceTopic(s.deviceID, topicTwinDesired), string(twin.DesiredMessage(tw))},
		{DeviceTopic(s.deviceID, topicTwinDelta), string(twin.DeltaMessage(tw))},
	} {
		b.srv.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
			TopicName: m.topic, Payload: []byte(m.payload), Created: now, Origin: mqtt.InlineClientId})
	}
	s.mu.Lock()
	s.twinLoaded = true
	s.mu.Unlock()
}

// publishTwin sends (and keeps as retained) the delta, and desired too
// when withDesired is set.
func (b *Broker) publishTwin(s *session, tw *model.Twin, withDesired bool) {
	if withDesired {
		if err := b.srv.Publish(DeviceTopic(s.deviceID, topicTwinDesired), twin.DesiredMessage(tw), true, 1); err != nil {
			b.log.Warn("mqtt: publishing desired", "device", s.deviceID, "err", err)
		}
	}
	if err := b.srv.Publish(DeviceTopic(s.deviceID, topicTwinDelta), twin.DeltaMessage(tw), true, 1); err != nil {
		b.log.Warn("mqtt: publishing the delta", "device", s.deviceID, "err", err)
	}
	s.mu.Lock()
	s.twinLoaded = true
	s.mu.Unlock()
}

// dropTwin forgets a disconnected device's retained twin messages.
func (b *Broker) dropTwin(deviceID string) {
	for _, t := range []string{topicTwinDesired, topicTwinDelta} {
		b.srv.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish},
			TopicName: DeviceTopic(deviceID, t)})
	}
}
