package scim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/identity"
)

type meta struct {
	ResourceType string    `json:"resourceType"`
	Created      time.Time `json:"created"`
	LastModified time.Time `json:"lastModified"`
	Location     string    `json:"location"`
}

type email struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

type userResource struct {
	Schemas     []string          `json:"schemas"`
	ID          string            `json:"id"`
	ExternalID  string            `json:"externalId,omitempty"`
	UserName    string            `json:"userName"`
	DisplayName string            `json:"displayName,omitempty"`
	Emails      []email           `json:"emails,omitempty"`
	Active      bool              `json:"active"`
	Groups      []groupRef        `json:"groups,omitempty"`
	Meta        meta              `json:"meta"`
	Name        map[string]string `json:"name,omitempty"`
}

type groupRef struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
}

func (h *Handler) userJSON(st *identity.SCIMState, u *identity.SCIMUser) userResource {
	res := userResource{Schemas: []string{schemaUser}, ID: u.ID, ExternalID: u.ExternalID, UserName: u.UserName,
		DisplayName: u.DisplayName, Active: u.Active,
		Meta: meta{ResourceType: "User", Created: u.Created, LastModified: u.Modified, Location: h.base + "/Users/" + u.ID}}
	if u.Email != "" {
		res.Emails = []email{{Value: u.Email, Type: "work", Primary: true}}
	}
	for _, g := range st.Groups {
		if slices.Contains(g.Members, u.ID) {
			res.Groups = append(res.Groups, groupRef{Value: g.ID, Display: g.DisplayName})
		}
	}
	slices.SortFunc(res.Groups, func(a, b groupRef) int { return strings.Compare(a.Display, b.Display) })
	return res
}

// userInput is a User as a client sends it (POST, PUT). Attributes
// Custos does not keep (name, title, phone numbers, …) are ignored.
type userInput struct {
	UserName    string          `json:"userName"`
	ExternalID  string          `json:"externalId"`
	DisplayName string          `json:"displayName"`
	Emails      []email         `json:"emails"`
	Active      json.RawMessage `json:"active"`
}

// apply sets u's attributes from in.
func (in userInput) apply(u *identity.SCIMUser) error {
	if in.UserName == "" {
		return bad("invalidValue", "userName is required")
	}
	u.UserName, u.ExternalID, u.DisplayName, u.Email = in.UserName, in.ExternalID, in.DisplayName, primaryEmail(in.Emails)
	u.Active = true
	if len(in.Active) > 0 {
		a, err := parseBool(in.Active)
		if err != nil {
			return err
		}
		u.Active = a
	}
	return nil
}

func primaryEmail(es []email) string {
	for _, e := range es {
		if e.Primary {
			return e.Value
		}
	}
	if len(es) > 0 {
		return es[0].Value
	}
	return ""
}

// parseBool reads a boolean that Entra ID may send as the string "False".
func parseBool(raw json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		switch strings.ToLower(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, bad("invalidValue", "active must be true or false")
}

func matchUser(u *identity.SCIMUser, terms []term) bool {
	for _, t := range terms {
		var v string
		switch t.attr {
		case "username":
			// userName is case-insensitive in the core schema.
			if !strings.EqualFold(u.UserName, t.value) {
				return false
			}
			continue
		case "externalid":
			v = u.ExternalID
		case "id":
			v = u.ID
		case "displayname":
			v = u.DisplayName
		case "emails.value", "emails":
			if !strings.EqualFold(u.Email, t.value) {
				return false
			}
			continue
		default:
			return false
		}
		if v != t.value {
			return false
		}
	}
	return true
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	listed(h, w, r, func(st *identity.SCIMState, terms []term) []any {
		var users []*identity.SCIMUser
		for _, u := range st.Users {
			if !u.Deleted && matchUser(u, terms) {
				users = append(users, u)
			}
		}
		slices.SortFunc(users, func(a, b *identity.SCIMUser) int { return strings.Compare(a.UserName, b.UserName) })
		all := make([]any, 0, len(users))
		for _, u := range users {
			all = append(all, h.userJSON(st, u))
		}
		return all
	})
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	got(h, w, r, func(st *identity.SCIMState) (userResource, error) {
		u, ok := st.Users[r.PathValue("id")]
		if !ok || u.Deleted {
			return userResource{}, notFound("user")
		}
		return h.userJSON(st, u), nil
	})
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(in userInput) {
		change(h, w, r, true, func(st *identity.SCIMState) (userResource, error) {
			now := time.Now().UTC()
			u := &identity.SCIMUser{ID: identity.NewSCIMID(), Created: now, Modified: now}
			if err := in.apply(u); err != nil {
				return userResource{}, err
			}
			// A tombstone of the same name gives way to the new user.
			for id, old := range st.Users {
				if old.Deleted && old.UserName == u.UserName {
					delete(st.Users, id)
				}
			}
			st.Users[u.ID] = u
			return h.userJSON(st, u), nil
		})
	})
}

func (h *Handler) replaceUser(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(in userInput) { h.updateUser(w, r, in.apply) })
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	withBody(h, w, r, func(p patchRequest) { h.updateUser(w, r, p.applyUser) })
}

// updateUser changes the live user the path names with fn.
func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request, fn func(*identity.SCIMUser) error) {
	change(h, w, r, false, func(st *identity.SCIMState) (userResource, error) {
		u, ok := st.Users[r.PathValue("id")]
		if !ok || u.Deleted {
			return userResource{}, notFound("user")
		}
		if err := fn(u); err != nil {
			return userResource{}, err
		}
		u.Modified = time.Now().UTC()
		return h.userJSON(st, u), nil
	})
}

// deleteUser leaves a tombstone (identity.SCIMUser.Deleted) and removes
// the user from every group.
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	remove(h, w, r, func(st *identity.SCIMState) error {
		id := r.PathValue("id")
		u, ok := st.Users[id]
		if !ok || u.Deleted {
			return notFound("user")
		}
		u.Deleted, u.Active, u.Modified = true, false, time.Now().UTC()
		for _, g := range st.Groups {
			g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == id })
		}
		return nil
	})
}
