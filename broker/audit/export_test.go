package audit

// KeysHeld returns how many keys a Throttle holds, overflow keys included.
func KeysHeld(t *Throttle) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
