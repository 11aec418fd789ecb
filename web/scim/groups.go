package scim

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/identity"
)

type memberRef struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Ref     string `json:"$ref,omitempty"`
}

type groupResource struct {
	Schemas     []string    `json:"schemas"`
	ID          string      `json:"id"`
	ExternalID  string      `json:"externalId,omitempty"`
	DisplayName string      `json:"displayName"`
	Members     []memberRef `json:"members,omitempty"`
	Meta        meta        `json:"meta"`
}

func (h *Handler) groupJSON(st *identity.SCIMState, g *identity.SCIMGroup, members bool) groupResource {
	res := groupResource{Schemas: []string{schemaGroup}, ID: g.ID, ExternalID: g.ExternalID, DisplayName: g.DisplayName,
		Meta: meta{ResourceType: "Group", Created: g.Created, LastModified: g.Modified, Location: h.base + "/Groups/" + g.ID}}
	if members {
		for _, id := range g.Members {
			if u, ok := st.Users[id]; ok {
				res.Members = append(res.Members, memberRef{Value: id, Display: u.UserName, Ref: h.base + "/Users/" + id})
			}
		}
	}
	return res
}

// groupInput is a Group as a client sends it (POST, PUT).
type groupInput struct {
	DisplayName string      `json:"displayName"`
	ExternalID  string      `json:"externalId"`
	Members     []memberRef `json:"members"`
}

func (in groupInput) apply(g *identity.SCIMGroup) {
	g.DisplayName, g.ExternalID = in.DisplayName, in.ExternalID
	g.Members = nil
	for _, m := range in.Members {
		if !slices.Contains(g.Members, m.Value) {
			g.Members = append(g.Members, m.Value)
		}
	}
}

func matchGroup(g *identity.SCIMGroup, terms []term) bool {
	for _, t := range terms {
		switch t.attr {
		case "displayname":
			if !strings.EqualFold(g.DisplayName, t.value) {
				return false
			}
		case "externalid":
			if g.ExternalID != t.value {
				return false
			}
		case "id":
			if g.ID != t.value {
				return false
			}
		case "members.value", "members":
			if !slices.Contains(g.Members, t.value) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// withMembers reports whether the response should list members: not when
// the client asks to leave them out (Okta and Entra ID do for lists).
func withMembers(r *http.Request) bool {
	ex := strings.ToLower(r.URL.Query().Get("excludedAttributes"))
	return !slices.Contains(strings.Split(strings.ReplaceAll(ex, " ", ""), ","), "members")
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) {
	listed(h, w, r, func(st *identity.SCIMState, terms []term) []any {
		var groups []*identity.SCIMGroup
		for _, g := range st.Groups {
			if matchGroup(g, terms) {
				groups = append(groups, g)
			}
		}
		slices.SortFunc(groups, func(a, b *identity.SCIMGroup) int { return strings.Compare(a.DisplayName, b.DisplayName) })
		all := make([]any, 0, len(groups))
		for _, g := range groups {
			all = append(all, h.groupJSON(st, g, withMembers(r)))
		}
		return all
	})
}

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request) {
	got(h, w, r, func(st *identity.SCIMState) (groupResource, error) {
		g, ok := st.Groups[r.PathValue("id")]
		if !ok {
			return groupResource{}, notFound("group")
		}
		return h.groupJSON(st, g, withMembers(r)), nil
	})
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(in groupInput) {
		change(h, w, r, true, func(st *identity.SCIMState) (groupResource, error) {
			now := time.Now().UTC()
			g := &identity.SCIMGroup{ID: identity.NewSCIMID(), Created: now, Modified: now}
			in.apply(g)
			st.Groups[g.ID] = g
			return h.groupJSON(st, g, true), nil
		})
	})
}

func (h *Handler) replaceGroup(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(in groupInput) {
		h.updateGroup(w, r, func(g *identity.SCIMGroup) error { in.apply(g); return nil })
	})
}

func (h *Handler) patchGroup(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(p patchRequest) { h.updateGroup(w, r, p.applyGroup) })
}

// updateGroup changes the group the path names with fn.
func (h *Handler) updateGroup(w http.ResponseWriter, r *http.Request, fn func(*identity.SCIMGroup) error) {
	change(h, w, r, false, func(st *identity.SCIMState) (groupResource, error) {
		g, ok := st.Groups[r.PathValue("id")]
		if !ok {
			return groupResource{}, notFound("group")
		}
		if err := fn(g); err != nil {
			return groupResource{}, err
		}
		g.Modified = time.Now().UTC()
		return h.groupJSON(st, g, true), nil
	})
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) {
	remove(h, w, r, func(st *identity.SCIMState) error {
		if _, ok := st.Groups[r.PathValue("id")]; !ok {
			return notFound("group")
		}
		delete(st.Groups, r.PathValue("id"))
		return nil
	})
}
