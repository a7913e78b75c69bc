package broker

import "strings"

// Topic names under a device's prefix d/{deviceID}/.
const (
	topicTelemetry      = "telemetry"
	topicTelemetrySenML = "telemetry/senml"
	topicTwinReported   = "twin/reported"
	topicTwinGet        = "twin/get"
	topicTwinDesired    = "twin/desired"
	topicTwinDelta      = "twin/delta"
	topicErrors         = "errors"
	topicOTAStatus      = "ota/status"
	topicSecMetrics     = "security/metrics"
	topicNeighbours     = "security/neighbours"
)

// DeviceTopic returns d/{deviceID}/{rest}.
func DeviceTopic(deviceID, rest string) string { return "d/" + deviceID + "/" + rest }

// CommandTopic is where a command is published to the device.
func CommandTopic(deviceID, requestID string) string {
	return DeviceTopic(deviceID, "commands/"+requestID)
}

// splitDevice splits d/{id}/{rest} into id and rest.
func splitDevice(topic string) (id, rest string, ok bool) {
	after, ok := strings.CutPrefix(topic, "d/")
	if !ok {
		return "", "", false
	}
	id, rest, ok = strings.Cut(after, "/")
	if !ok || id == "" || rest == "" {
		return "", "", false
	}
	return id, rest, true
}

// inbound is what a device publishes, by kind.
type inbound int

const (
	inNone inbound = iota
	inTelemetry
	inTelemetrySenML
	inTwinReported
	inTwinGet
	inCommandResult
	inOTAStatus
	inSecurityMetrics
	inNeighbours
)

// classify tells what a device's publish to rest (under its prefix) is,
// and for a command result the request ID.
func classify(rest string) (inbound, string) {
	switch rest {
	case topicTelemetry:
		return inTelemetry, ""
	case topicTelemetrySenML:
		return inTelemetrySenML, ""
	case topicTwinReported:
		return inTwinReported, ""
	case topicTwinGet:
		return inTwinGet, ""
	case topicOTAStatus:
		return inOTAStatus, ""
	case topicSecMetrics:
		return inSecurityMetrics, ""
	case topicNeighbours:
		return inNeighbours, ""
	}
	if r, ok := strings.CutPrefix(rest, "commands/"); ok {
		if id, ok := strings.CutSuffix(r, "/result"); ok && id != "" && !strings.ContainsAny(id, "/+#") {
			return inCommandResult, id
		}
	}
	return inNone, ""
}

// deviceMayPublish applies the device ACL to a topic it publishes to.
func deviceMayPublish(deviceID, topic string, quarantined bool) bool {
	id, rest, ok := splitDevice(topic)
	if !ok || id != deviceID {
		return false
	}
	if quarantined {
		return rest == topicOTAStatus
	}
	k, _ := classify(rest)
	return k != inNone
}

// deviceMaySubscribe applies the device ACL to a filter: anything under
// its own prefix (only ota/ when quarantined).
func deviceMaySubscribe(deviceID, filter string, quarantined bool) bool {
	prefix := "d/" + deviceID + "/"
	rest, ok := strings.CutPrefix(filter, prefix)
	if !ok || rest == "" {
		return false
	}
	if quarantined {
		return strings.HasPrefix(rest, "ota/")
	}
	return true
}

// deviceMayReceive applies the device ACL to a topic delivered to it.
func deviceMayReceive(deviceID, topic string, quarantined bool) bool {
	id, rest, ok := splitDevice(topic)
	if !ok || id != deviceID {
		return false
	}
	return !quarantined || strings.HasPrefix(rest, "ota/")
}

// appFilters are the filters (after d/{id or +}/) an application may use.
var appFilters = map[string]bool{
	"telemetry": true, "telemetry/senml": true, "telemetry/#": true, "twin/reported": true,
	"commands/+/result": true, "security/metrics": true,
}

// appMaySubscribe: d/+/… or d/{id}/… with one of appFilters.
func appMaySubscribe(filter string) bool {
	id, rest, ok := splitDevice(filter)
	if !ok || strings.ContainsAny(id, "#") || (strings.Contains(id, "+") && id != "+") {
		return false
	}
	return appFilters[rest]
}

// matchFilter reports whether an MQTT topic filter matches a topic.
func matchFilter(filter, topic string) bool {
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		tl, trest, tmore := strings.Cut(topic, "/")
		switch {
		case fl == "#":
			return true
		case fl != "+" && fl != tl:
			return false
		}
		if !fmore || !tmore {
			if !fmore && !tmore {
				return true
			}
			// "a/#" matches "a" too.
			return !tmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}
