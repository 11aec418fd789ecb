package main

import (
	"slices"
	"strings"
	"testing"
)

func TestTransferArgs(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		opts       []string
		port, dest string
	}{
		{"broker", []string{"-i", "k", "-o", "BatchMode=yes", "-p", "2222", "demo-ssh@127.0.0.1"},
			[]string{"-i", "k", "-o", "BatchMode=yes"}, "2222", "demo-ssh@127.0.0.1"},
		{"direct with certificate", []string{"-i", "k", "-o", "CertificateFile=c", "-p", "22", "custos-demo@127.0.0.1"},
			[]string{"-i", "k", "-o", "CertificateFile=c"}, "22", "custos-demo@127.0.0.1"},
		{"no port", []string{"-i", "k", "host"}, []string{"-i", "k"}, "", "host"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts, port, dest := transferArgs(sshPeer{args: c.args})
			if !slices.Equal(opts, c.opts) || port != c.port || dest != c.dest {
				t.Errorf("transferArgs(%q) = %q, %q, %q; want %q, %q, %q", c.args, opts, port, dest, c.opts, c.port, c.dest)
			}
		})
	}
}

func TestLatencySVGOnlyBoundedLatencyRows(t *testing.T) {
	rows := []row{
		newRow("echo", shared, "added p50", "ms", []float64{0.2, 0.3}, atMost("≤ 0.5 ms", 0.5)),
		newRow("stream", shared, "MB/s", "MB/s", []float64{100}, nil),
	}
	rows[0].Plot = "latency"
	rows[1].Plot = "latency" // no bound: not drawn
	svg := latencySVG(rows)
	if !strings.Contains(svg, "echo · added p50") || strings.Contains(svg, "stream") {
		t.Errorf("latency plot rows wrong:\n%s", svg)
	}
}
