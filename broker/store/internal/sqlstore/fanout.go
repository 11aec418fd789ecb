package sqlstore

import (
	"context"
	"sync"

	"github.com/custos-pam/custos/broker"
)

// Hub fans grant events out to subscribers. Publish never blocks and never
// drops: each subscriber has its own queue drained by its own goroutine,
// so a slow reader delays only itself.
type Hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	mu    sync.Mutex
	queue []broker.GrantEvent
	wake  chan struct{} // capacity 1
	stop  chan struct{} // closed by Hub.Close
}

// Subscribe returns a channel of events published from now on. It closes
// when ctx ends or the hub closes.
func (h *Hub) Subscribe(ctx context.Context) <-chan broker.GrantEvent {
	out := make(chan broker.GrantEvent)
	s := &subscriber{wake: make(chan struct{}, 1), stop: make(chan struct{})}
	h.mu.Lock()
	if h.closed || ctx.Err() != nil {
		h.mu.Unlock()
		close(out)
		return out
	}
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go h.run(ctx, s, out)
	return out
}

func (h *Hub) run(ctx context.Context, s *subscriber, out chan<- broker.GrantEvent) {
	defer func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
		close(out)
	}()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			}
		}
		ev := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		}
	}
}

// Publish queues events for every current subscriber.
func (h *Hub) Publish(evs ...broker.GrantEvent) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		s.queue = append(s.queue, evs...)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Close closes every subscriber's channel; later subscriptions get a
// closed channel.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		close(s.stop)
	}
}
