package main

import (
	"fmt"
	"html"
	"strings"
)

// latencySVG draws the time figures held against an upper bound (rows
// with Plot "latency": keystroke echo, session search, Slack approval)
// as a fraction of their target: one bar per row (median, min–max
// whisker), the target at 1.0, each bar labelled with its value.
func latencySVG(rows []row) string {
	var rs []row
	for _, r := range rows {
		if r.Plot == "latency" && len(r.Runs) > 0 && r.Bound > 0 {
			rs = append(rs, r)
		}
	}
	const left, width, barH, gap = 460, 320, 14, 5
	maxV := 1.5
	for _, r := range rs {
		maxV = max(maxV, min(r.Max/r.Bound, 4))
	}
	h := 40 + len(rs)*(barH+gap) + 30
	x := func(v float64) float64 { return left + max(min(v, maxV), 0)/maxV*width }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+120, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">Times against their targets (median ÷ target, whisker min–max); line at the target</text>`+"\n")
	for i, r := range rs {
		y := 40 + i*(barH+gap)
		color := "#4a7"
		if r.Status == "missed" {
			color = "#d64"
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+11, html.EscapeString(r.Scenario+" · "+r.Measure))
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, x(r.Median/r.Bound)-left, barH, color)
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="black"/>`+"\n", x(r.Min/r.Bound), x(r.Max/r.Bound), y+barH/2, y+barH/2)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d">%s %s (%s)</text>`+"\n", x(r.Max/r.Bound)+4, y+11, num(r.Median), html.EscapeString(r.Unit), html.EscapeString(r.Target))
	}
	fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="30" y2="%d" stroke="#333" stroke-dasharray="4 3"/>`+"\n", x(1), x(1), h-20)
	fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">target</text>`+"\n", x(1), h-6)
	sb.WriteString("</svg>\n")
	return sb.String()
}
