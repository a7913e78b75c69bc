package broker

import (
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// QoS 1 telemetry is acknowledged after the database commit without
// holding up the connection: the device may have several messages in
// flight (up to the Receive Maximum), and they are written together with
// other devices' messages in one transaction. The PUBACKs are written by a
// few shard goroutines, each serving a fixed set of sessions in FIFO
// order, so a device gets its PUBACKs in the order it published (MQTT
// 4.6) and a slow connection holds up only its shard.

const ackShards = 8

type ackJob struct {
	s        *session
	packetID uint16
	err      error
}

type acker struct {
	b      *Broker
	shards [ackShards]chan ackJob
}

func newAcker(b *Broker) *acker {
	a := &acker{b: b}
	for i := range a.shards {
		a.shards[i] = make(chan ackJob, 4096)
	}
	return a
}

func (a *acker) run(i int) {
	defer a.b.wg.Done()
	for {
		select {
		case j := <-a.shards[i]:
			a.ack(j)
		case <-a.b.ctx.Done():
			for {
				select {
				case j := <-a.shards[i]:
					a.ack(j)
				default:
					return
				}
			}
		}
	}
}

func (a *acker) push(j ackJob) {
	a.shards[j.s.shard%ackShards] <- j
}

func (a *acker) ack(j ackJob) {
	defer j.s.ackDone()
	s := j.s
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: j.packetID}
	if j.err != nil {
		a.b.log.Error("mqtt: could not store telemetry", "device", s.deviceID, "err", j.err)
		if s.cl.Properties.ProtocolVersion != 5 {
			s.cl.Stop(j.err) // no acknowledgement: the device sends it again
			return
		}
		pk.ReasonCode = codeUnspecified
		pk.Properties.ReasonString = "the platform could not store the message; send it again"
		a.b.m.refused.WithLabelValues("0x80").Inc()
	}
	if err := s.cl.WritePacket(pk); err != nil {
		a.b.log.Debug("mqtt: acknowledging telemetry", "device", s.deviceID, "err", err)
	}
}

// pendingAcks counts a session's QoS 1 messages stored but not yet
// acknowledged; other acknowledgements wait for them (ordering).
type pendingAcks struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
}

func (s *session) ackAdd() {
	s.acks.mu.Lock()
	s.acks.n++
	s.acks.mu.Unlock()
}

func (s *session) ackDone() {
	s.acks.mu.Lock()
	s.acks.n--
	if s.acks.n == 0 && s.acks.cond != nil {
		s.acks.cond.Broadcast()
	}
	s.acks.mu.Unlock()
}

// ackWait returns once every earlier telemetry PUBACK of the session is out.
func (s *session) ackWait() {
	s.acks.mu.Lock()
	defer s.acks.mu.Unlock()
	if s.acks.cond == nil {
		s.acks.cond = sync.NewCond(&s.acks.mu)
	}
	for s.acks.n > 0 {
		s.acks.cond.Wait()
	}
}
