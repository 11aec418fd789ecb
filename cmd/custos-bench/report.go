package main

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type meta struct {
	Mode    string `json:"mode"` // QUICK or full
	Machine string `json:"machine"`
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	Commit  string `json:"commit"`
	Date    string `json:"date"`
	Runs    int    `json:"runs_per_figure"`
	Secs    int    `json:"seconds_per_pgbench_run"`
	// StreamMiB is the size of each SSH stream, MaxConns the most idle
	// connections held at once.
	StreamMiB int64 `json:"ssh_stream_mib"`
	MaxConns  int   `json:"max_idle_connections"`
}

func (b *bench) meta() meta {
	m := meta{Mode: "full", Cores: runtime.NumCPU(), Date: time.Now().UTC().Format(time.RFC3339), Runs: b.p.runs, Secs: b.p.secs, StreamMiB: b.p.streamMiB}
	for _, n := range append(append([]int{}, b.p.pgCounts...), b.p.sshCounts...) {
		m.MaxConns = max(m.MaxConns, n)
	}
	if b.p.quick {
		m.Mode = "QUICK"
	}
	m.Machine = runtime.GOOS + "/" + runtime.GOARCH
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(ci), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(mi), "\n")
		m.Machine += ", " + strings.Join(strings.Fields(l)[1:], " ") + " RAM"
	}
	if out, err := exec.Command("git", "-C", b.s.root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, _ := exec.Command("git", "-C", b.s.root, "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
			m.Commit += "-dirty"
		}
	}
	return m
}

func (b *bench) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: results: %w", err)
	}
	m := b.meta()
	rows := append(append([]row{}, b.rows...), notMeasured()...)
	js, err := json.MarshalIndent(struct {
		Meta meta  `json:"meta"`
		Rows []row `json:"rows"`
	}{m, rows}, "", "  ")
	if err != nil {
		return err
	}
	md := markdown(m, rows)
	files := map[string][]byte{
		"latest.json":         append(js, '\n'),
		"latest.md":           []byte(md),
		"ratios.svg":          []byte(ratioSVG(rows)),
		"memory-per-conn.svg": []byte(memorySVG(rows)),
		"latency.svg":         []byte(latencySVG(rows)), // plots_more.go
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("bench: results: %w", err)
		}
	}
	fmt.Print(md)
	fmt.Printf("\nwritten: %s/{latest.md,latest.json,ratios.svg,memory-per-conn.svg,latency.svg}\n", dir)
	return nil
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func markdown(m meta, rows []row) string {
	var sb strings.Builder
	title := "Custos benchmark results"
	if m.Mode == "QUICK" {
		title += fmt.Sprintf(" — QUICK run (%d runs per figure, %d s pgbench runs, %d MiB streams, at most %d connections: indicative only)",
			m.Runs, m.Secs, m.StreamMiB, m.MaxConns)
	}
	fmt.Fprintf(&sb, "# %s\n\n", title)
	fmt.Fprintf(&sb, "- mode: **%s**\n- machine: %s, %s, %d cores\n- commit: %s\n- date: %s\n- each figure: median of %d runs [min – max]; ratios are taken run by run against a peer measured in the same run\n\n",
		m.Mode, m.Machine, m.CPU, m.Cores, m.Commit, m.Date, m.Runs)
	sb.WriteString("| scenario | layout | measure | median [min – max] | target | status |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		val := ""
		if len(r.Runs) > 0 {
			val = fmt.Sprintf("%s %s [%s – %s]", num(r.Median), r.Unit, num(r.Min), num(r.Max))
		}
		status := r.Status
		switch status {
		case "met":
			status = "**met**"
		case "missed":
			status = "**missed**"
		case "info":
			status = ""
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Layout, r.Measure, val, r.Target, status)
	}
	sb.WriteString("\n![ratios](ratios.svg)\n\n![memory per connection](memory-per-conn.svg)\n\n![latency against target](latency.svg)\n")
	return sb.String()
}

// ratioSVG draws one horizontal bar per ratio row (median, with a min–max
// whisker) against a line at 1.0×.
func ratioSVG(rows []row) string {
	var rs []row
	for _, r := range rows {
		if r.Plot == "ratio" && len(r.Runs) > 0 {
			rs = append(rs, r)
		}
	}
	const left, width, barH, gap = 420, 360, 16, 6
	maxV := 1.2
	for _, r := range rs {
		if r.Max > maxV {
			maxV = r.Max
		}
	}
	h := 40 + len(rs)*(barH+gap) + 30
	x := func(v float64) float64 { return left + v/maxV*width }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+60, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">Throughput ratios (median, whisker min–max); line at 1.0×</text>`+"\n")
	for i, r := range rs {
		y := 40 + i*(barH+gap)
		color := "#4a7"
		if r.Status == "missed" {
			color = "#d64"
		}
		label := r.Scenario + " · " + r.Measure
		if r.Layout == ownCore {
			label += " (own core)"
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+12, html.EscapeString(label))
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, x(r.Median)-left, barH, color)
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="black"/>`+"\n", x(r.Min), x(r.Max), y+barH/2, y+barH/2)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d">%.2f×</text>`+"\n", x(r.Max)+4, y+12, r.Median)
	}
	fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="30" y2="%d" stroke="#333" stroke-dasharray="4 3"/>`+"\n", x(1), x(1), h-20)
	fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">1.0×</text>`+"\n", x(1), h-6)
	sb.WriteString("</svg>\n")
	return sb.String()
}

// memorySVG plots broker Go heap growth per connection against the number of
// connections held, one line per protocol.
func memorySVG(rows []row) string {
	series := map[string][]row{}
	maxC, maxV := 1, 1.0
	for _, r := range rows {
		if strings.HasPrefix(r.Plot, "memory-") && len(r.Runs) > 0 {
			k := strings.TrimPrefix(r.Plot, "memory-")
			series[k] = append(series[k], r)
			maxC = max(maxC, r.Count)
			maxV = max(maxV, r.Max)
		}
	}
	maxV = max(maxV, 160)
	const l, t, w, h = 60, 40, 480, 260
	px := func(c int) float64 { return l + float64(c)/float64(maxC)*w }
	py := func(v float64) float64 { return t + h - v/maxV*h }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", l+w+140, t+h+50)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">Broker Go heap growth per idle connection (KiB, after GC) against connections held</text>`+"\n")
	fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", l, t, l, t+h, l, t+h, l+w, t+h)
	for _, v := range []float64{0, maxV / 2, maxV} {
		fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n", l-4, py(v)+4, v)
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">connections held (max %d)</text>`+"\n", l+w/2, t+h+36, maxC)
	colors := map[string]string{"postgres": "#36c", "ssh": "#c63"}
	targets := map[string]float64{"postgres": 64, "ssh": 150}
	i := 0
	for _, k := range []string{"postgres", "ssh"} {
		rs := series[k]
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`+"\n", l, l+w, py(targets[k]), py(targets[k]), colors[k])
		fmt.Fprintf(&sb, `<text x="%d" y="%.1f" fill="%s">%s target %.0f</text>`+"\n", l+w+4, py(targets[k])+4, colors[k], k, targets[k])
		var pts []string
		for _, r := range rs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(r.Count), py(r.Median)))
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s"/>`+"\n",
				px(r.Count), py(r.Median), colors[k], px(r.Count), px(r.Count), py(r.Min), py(r.Max), colors[k])
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(r.Count), t+h+14, r.Count)
		}
		if len(pts) > 0 {
			fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s"/>`+"\n", strings.Join(pts, " "), colors[k])
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" fill="%s">● %s</text>`+"\n", l+10+i*90, t+12, colors[k], k)
		i++
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}
