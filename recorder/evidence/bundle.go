package evidence

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"page":    SessionPage,
	"fmtDate": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"join":    func(xs []string) string { return strings.Join(xs, ", ") },
	"deref":   func(b *bool) bool { return b != nil && *b },
	"short": func(h string) string {
		if len(h) > 16 {
			return h[:16] + "…"
		}
		return h
	},
	"sig": func(m map[string]any) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %v", k, m[k]))
		}
		return strings.Join(parts, "; ")
	},
}).ParseFS(templateFS, "templates/*.html"))

// PeriodReadme is the period bundle's README.txt.
const PeriodReadme = `Custos evidence bundle for a target and a period
================================================

index.html          the evidence, human-readable; opens offline in any browser
sessions/*.html     one page per session: what it ran, its verification, its
                    audit records
evidence.json       the same, machine-readable; its JSON Schema is
                    docs/evidence.schema.json in the Custos distribution
SHA256SUMS          the SHA-256 of every file above

To check independently: sha256sum -c SHA256SUMS. In evidence.json,
audit.links lists every audit record of the period (seq, prev_hash, hash):
each prev_hash equals the hash before it and the first equals audit.anchor;
each record in audit.records hashes (SHA-256 of its canonical form, see
docs/audit-log.md) to its hash. "custos verify <session>" re-checks any
recording against the store; "custos audit verify" re-checks the whole log
and its signed checkpoints.
`

// SessionPage is the path inside the bundle of a session's page.
func SessionPage(id string) string {
	safe := true
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			safe = false
			break
		}
	}
	if !safe || id == "" || len(id) > 100 {
		sum := sha256.Sum256([]byte(id))
		id = hex.EncodeToString(sum[:12])
	}
	return "sessions/" + id + ".html"
}

// WriteZip writes the bundle as a ZIP to w as it goes, so a large bundle
// is never held whole in memory: index.html, one page per session,
// evidence.json, README.txt and SHA256SUMS.
func (b *Bundle) WriteZip(w io.Writer) error {
	zw := zip.NewWriter(w)
	now := b.GeneratedAt
	var sums bytes.Buffer
	file := func(name string, write func(io.Writer) error) error {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return fmt.Errorf("evidence: zip %s: %w", name, err)
		}
		h := sha256.New()
		if err := write(io.MultiWriter(fw, h)); err != nil {
			return fmt.Errorf("evidence: zip %s: %w", name, err)
		}
		fmt.Fprintf(&sums, "%s  %s\n", hexSum(h), name)
		return nil
	}
	if err := file("README.txt", func(w io.Writer) error { _, err := io.WriteString(w, PeriodReadme); return err }); err != nil {
		return err
	}
	if err := file("evidence.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(b)
	}); err != nil {
		return err
	}
	if err := file("index.html", func(w io.Writer) error { return pages.ExecuteTemplate(w, "index.html", b) }); err != nil {
		return err
	}
	bySession := map[string][]broker.AuditRecord{}
	for _, r := range b.Audit.Records {
		if id, _ := details(r)["session_id"].(string); id != "" {
			bySession[id] = append(bySession[id], r)
		}
	}
	for i := range b.Sessions {
		s := &b.Sessions[i]
		data := struct {
			Target  string
			S       *Session
			Records []broker.AuditRecord
		}{b.Target, s, bySession[s.ID]}
		if err := file(SessionPage(s.ID), func(w io.Writer) error { return pages.ExecuteTemplate(w, "session.html", data) }); err != nil {
			return err
		}
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: "SHA256SUMS", Method: zip.Deflate, Modified: now})
	if err == nil {
		_, err = fw.Write(sums.Bytes())
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return fmt.Errorf("evidence: zip: %w", err)
	}
	return nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// BuildPeriod collects a target's evidence for a period and writes it to w
// as a ZIP. It returns the bundle for the caller's audit record.
func BuildPeriod(ctx context.Context, in PeriodInput, w io.Writer) (*Bundle, error) {
	b, err := Collect(ctx, in)
	if err != nil {
		return nil, err
	}
	return b, b.WriteZip(w)
}
