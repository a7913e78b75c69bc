package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

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

// ackWaitMax is the longest a 3.1.1 device's reader waits for room under
// Receive Maximum, as long as the ingester's full queue makes a message
// wait: then the store is not keeping up, and the device is let go.
const ackWaitMax = 15 * time.Second

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

// ackGather is the most jobs a shard takes in one go. A device's PUBACKs
// among them are buffered and written together: one TLS record and one
// system call for all of a device's messages in a commit, not one each.
const ackGather = 256

func (a *acker) run(i int) {
	defer a.b.wg.Done()
	jobs := make([]ackJob, 0, ackGather)
	last := map[*session]int{}
	for {
		select {
		case j := <-a.shards[i]:
			jobs = append(jobs[:0], j)
		case <-a.b.ctx.Done():
			for {
				select {
				case j := <-a.shards[i]:
					a.ack(j, false)
				default:
					return
				}
			}
		}
	gather:
		for len(jobs) < ackGather {
			select {
			case j := <-a.shards[i]:
				jobs = append(jobs, j)
			default:
				break gather
			}
		}
		clear(last)
		for k, j := range jobs {
			last[j.s] = k
		}
		for k, j := range jobs {
			a.ack(j, last[j.s] > k)
		}
		clear(jobs) // no session stays reachable from the idle shard
	}
}

func (a *acker) push(j ackJob) {
	if a.b.ctx.Err() == nil {
		select {
		case a.shards[j.s.shard%ackShards] <- j:
			return
		case <-a.b.ctx.Done():
		}
	}
	// Shutting down, the shards may be gone: no PUBACK (the device sends
	// the message again), rather than a shutdown that waits for a shard
	// that no longer reads.
	j.s.paid()
	j.s.ackDone()
}

// ack writes one PUBACK; with more, the session has further PUBACKs in
// this gather, so it is only buffered (the last one sends them all).
func (a *acker) ack(j ackJob, more bool) {
	defer j.s.ackDone()
	s := j.s
	s.paid() // before the write: with the PUBACK, the device may send again
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: j.packetID}
	if j.err != nil {
		a.b.log.Error("mqtt: could not store telemetry", "device", s.deviceID, "err", j.err)
		if s.cl.Properties.ProtocolVersion != 5 {
			_ = s.cl.FlushHeld() // the PUBACKs before this one still go out
			s.cl.Stop(j.err)     // no acknowledgement: the device sends it again
			return
		}
		pk.ReasonCode = codeUnspecified
		pk.Properties.ReasonString = "the platform could not store the message; send it again"
		a.b.m.refused.WithLabelValues("0x80").Inc()
	}
	write := s.cl.WritePacket
	if more {
		write = s.cl.WritePacketHeld
	}
	if err := write(pk); err != nil {
		a.b.log.Debug("mqtt: acknowledging telemetry", "device", s.deviceID, "err", err)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			// The device stopped reading; its next write would wait again
			// and hold up the shard's other sessions.
			s.cl.Stop(err)
		}
	}
}

// pendingAcks counts a session's QoS 1 messages stored but not yet
// acknowledged; other acknowledgements wait for them (ordering).
type pendingAcks struct {
	mu   sync.Mutex
	cond *sync.Cond // made by the first to wait
	n    int        // PUBACKs not yet written
	// owed: PUBACKs not yet handed to the connection, what counts against
	// Receive Maximum. It drops before the write, n after it: a device that
	// has its PUBACK and sends at once must find it dropped.
	owed int
}

// owe counts a PUBACK the session will send (ackDone and paid end it). With
// max already owed it waits for one to be paid, until ctx ends or the
// deadline passes, or, when not to wait, at once; then it counts nothing
// and returns false.
func (s *session) owe(ctx context.Context, max int, wait bool, deadline time.Time) bool {
	s.acks.mu.Lock()
	defer s.acks.mu.Unlock()
	room := func() bool { return s.acks.owed < max }
	if !room() && (!wait || !s.waitAcksLocked(ctx, deadline, room)) {
		return false
	}
	s.acks.owed++
	s.acks.n++
	return true
}

// waitAcksLocked waits (s.acks.mu held) until done reports true, ctx
// ends or the deadline passes, and reports whether done. PUBACKs are
// written by the shards; a stalled store or a shutdown must not keep a
// device's reader waiting for them for good.
func (s *session) waitAcksLocked(ctx context.Context, deadline time.Time, done func() bool) bool {
	if done() {
		return true
	}
	if s.acks.cond == nil {
		s.acks.cond = sync.NewCond(&s.acks.mu)
	}
	wake := func() {
		s.acks.mu.Lock()
		s.acks.cond.Broadcast()
		s.acks.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, wake)
	defer stop()
	if !deadline.IsZero() {
		t := time.AfterFunc(time.Until(deadline), wake)
		defer t.Stop()
	}
	for !done() {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return false
		}
		s.acks.cond.Wait()
	}
	return true
}

// paid: an owed PUBACK is being written (or never will be).
func (s *session) paid() {
	s.acks.mu.Lock()
	s.acks.owed--
	if s.acks.cond != nil {
		s.acks.cond.Broadcast()
	}
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

// ackWait returns once every earlier telemetry PUBACK of the session is
// out, or ctx (the broker's) ended.
func (s *session) ackWait(ctx context.Context) {
	s.acks.mu.Lock()
	defer s.acks.mu.Unlock()
	s.waitAcksLocked(ctx, time.Time{}, func() bool { return s.acks.n == 0 })
}
