package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pam/custos/web"
	"github.com/custos-pam/custos/web/scim"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// apiOperations lists the document's operations as ServeMux patterns
// ("GET /api/v1/requests/{id}"), and those without a summary.
func apiOperations(t *testing.T, doc []byte) (ops, undescribed []string) {
	t.Helper()
	var d struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", d.OpenAPI)
	}
	for path, item := range d.Paths {
		for method, op := range item {
			if method == "parameters" {
				continue
			}
			p := strings.ToUpper(method) + " " + path
			ops = append(ops, p)
			if s, _ := op["summary"].(string); strings.TrimSpace(s) == "" {
				undescribed = append(undescribed, p)
			}
		}
	}
	slices.Sort(ops)
	return ops, undescribed
}

// undocumented are the /api/v1 routes of routes without an operation.
func undocumented(routes, ops []string) []string {
	var out []string
	for _, r := range routes {
		if strings.Contains(r, " /api/v1/") && !slices.Contains(ops, r) {
			out = append(out, r)
		}
	}
	return out
}

// TestOpenAPIMatchesRoutes: every route the broker registers under
// /api/v1 has an operation with a summary in the OpenAPI document, every
// operation is served, and the document is served to anonymous callers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, err := web.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	ops, undescribed := apiOperations(t, doc)
	if len(undescribed) > 0 {
		t.Errorf("operations without a summary: %v", undescribed)
	}
	env := uitest.Start(t)
	routes := env.Web.Routes()
	if missing := undocumented(routes, ops); len(missing) > 0 {
		t.Errorf("routes without a description in web/openapi.yaml: %v", missing)
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) {
			t.Errorf("web/openapi.yaml describes %s, which is not served", op)
		}
	}

	// SCIM (web/scim) is excluded: RFC 7644 describes it, it takes the
	// SCIM token and never a user's, so none of its routes may sit under
	// /api/v1 where user tokens are accepted.
	for _, p := range scim.Routes {
		if _, path, _ := strings.Cut(p, " "); !strings.HasPrefix(path, "/scim/v2/") {
			t.Errorf("SCIM route %s outside /scim/v2", p)
		}
	}

	// A route added without a description fails the comparison.
	added := append(slices.Clone(routes), "POST /api/v1/requests/{id}/extend")
	if got := undocumented(added, ops); !slices.Equal(got, []string{"POST /api/v1/requests/{id}/extend"}) {
		t.Errorf("an undescribed route was not caught: %v", got)
	}

	resp, err := env.Client().Get(env.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || string(body) != string(doc) {
		t.Fatalf("GET /api/v1/openapi.json: %d %s %.100s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
