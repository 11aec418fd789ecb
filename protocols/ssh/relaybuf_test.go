package sshproxy

import "testing"

func TestRelayBufSizes(t *testing.T) {
	const small, packet, large = 8 << 10, 32 << 10, 256 << 10
	tests := []struct {
		name  string
		reads []int // bytes each read returns, as a share of the buffer it got
		want  []int // buffer length offered for each read, then the next
	}{
		{"keystrokes stay small", []int{1, 3, 100}, []int{small, small, small, small}},
		{"a full small read steps up", []int{small, 1}, []int{small, packet, small}},
		{"a busy stream reaches large and stays", []int{small, packet, large, large}, []int{small, packet, large, large, large}},
		{"a drained large read keeps a packet", []int{small, packet, 40 << 10}, []int{small, packet, large, packet}},
		{"a trickle after a burst goes small", []int{small, packet, 40 << 10, 5}, []int{small, packet, large, packet, small}},
		{"a packet at a time alternates, never splits", []int{small, packet, packet, packet, packet}, []int{small, packet, large, packet, large, packet}},
		{"end of stream", []int{small, packet, 0}, []int{small, packet, large, small}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rb relayBuf
			defer rb.release()
			for i, n := range tt.reads {
				if got := len(rb.buf()); got != tt.want[i] {
					t.Fatalf("read %d: buffer %d, want %d", i, got, tt.want[i])
				}
				rb.used(n)
			}
			if got := len(rb.buf()); got != tt.want[len(tt.reads)] {
				t.Fatalf("next read: buffer %d, want %d", got, tt.want[len(tt.reads)])
			}
		})
	}
}
