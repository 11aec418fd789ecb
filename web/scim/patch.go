package scim

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/custos-pam/custos/broker/identity"
)

// patchRequest is an RFC 7644 §3.5.2 PATCH body.
type patchRequest struct {
	Schemas    []string    `json:"schemas"`
	Operations []operation `json:"Operations"`
}

// operation is one PATCH operation. Op is compared case-insensitively:
// Entra ID sends "Replace", "Add" and "Remove".
type operation struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

var memberPath = regexp.MustCompile(`^(?i)members\[\s*value\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]$`)

func (p patchRequest) ops() ([]operation, error) {
	if len(p.Operations) == 0 || len(p.Operations) > 1000 {
		return nil, bad("invalidValue", "Operations must list 1 to 1000 operations")
	}
	for i := range p.Operations {
		p.Operations[i].Op = strings.ToLower(p.Operations[i].Op)
		switch p.Operations[i].Op {
		case "add", "replace", "remove":
		default:
			return nil, bad("invalidSyntax", "op must be add, replace or remove")
		}
	}
	return p.Operations, nil
}

// applyUser applies the operations to u. Okta sends
// {"op":"replace","value":{"active":false}}; Entra ID sends
// {"op":"Replace","path":"active","value":"False"}. Attributes Custos
// does not keep are accepted and ignored.
func (p patchRequest) applyUser(u *identity.SCIMUser) error {
	ops, err := p.ops()
	if err != nil {
		return err
	}
	for _, op := range ops {
		if op.Path == "" {
			if op.Op == "remove" {
				return bad("noTarget", "remove needs a path")
			}
			var attrs map[string]json.RawMessage
			if err := json.Unmarshal(op.Value, &attrs); err != nil {
				return bad("invalidValue", "an operation without path needs an object value")
			}
			for k, v := range attrs {
				if err := setUserAttr(u, k, v); err != nil {
					return err
				}
			}
			continue
		}
		if op.Op == "remove" {
			if err := setUserAttr(u, op.Path, nil); err != nil {
				return err
			}
			continue
		}
		if err := setUserAttr(u, op.Path, op.Value); err != nil {
			return err
		}
	}
	return nil
}

// setUserAttr sets one attribute; v nil removes it.
func setUserAttr(u *identity.SCIMUser, path string, v json.RawMessage) error {
	str := func() (string, error) {
		if v == nil {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", bad("invalidValue", path+" must be a string")
		}
		return s, nil
	}
	var err error
	switch p := strings.ToLower(path); {
	case p == "active":
		if v == nil {
			return bad("mutability", "active cannot be removed")
		}
		u.Active, err = parseBool(v)
	case p == "username":
		var s string
		if s, err = str(); err == nil {
			if s == "" {
				return bad("invalidValue", "userName is required")
			}
			u.UserName = s
		}
	case p == "externalid":
		u.ExternalID, err = str()
	case p == "displayname":
		u.DisplayName, err = str()
	case p == "emails":
		var es []email
		if v != nil {
			if json.Unmarshal(v, &es) != nil {
				return bad("invalidValue", "emails must be a list")
			}
		}
		u.Email = primaryEmail(es)
	case strings.HasPrefix(p, "emails[") && strings.HasSuffix(p, ".value"):
		u.Email, err = str()
	}
	return err
}

// applyGroup applies the operations to g: members added and removed as
// Okta and Entra ID send them, and displayName or externalId replaced.
func (p patchRequest) applyGroup(g *identity.SCIMGroup) error {
	ops, err := p.ops()
	if err != nil {
		return err
	}
	for _, op := range ops {
		path := strings.ToLower(op.Path)
		switch {
		case path == "" && op.Op != "remove":
			var in struct {
				DisplayName *string     `json:"displayName"`
				ExternalID  *string     `json:"externalId"`
				Members     []memberRef `json:"members"`
			}
			if err := json.Unmarshal(op.Value, &in); err != nil {
				return bad("invalidValue", "an operation without path needs an object value")
			}
			if in.DisplayName != nil {
				g.DisplayName = *in.DisplayName
			}
			if in.ExternalID != nil {
				g.ExternalID = *in.ExternalID
			}
			if in.Members != nil {
				if op.Op == "replace" {
					g.Members = nil
				}
				g.Members = addMembers(g.Members, in.Members)
			}
		case path == "members":
			var ms []memberRef
			if len(op.Value) > 0 && json.Unmarshal(op.Value, &ms) != nil {
				return bad("invalidValue", "members must be a list of {\"value\": id}")
			}
			switch op.Op {
			case "add":
				g.Members = addMembers(g.Members, ms)
			case "replace":
				g.Members = addMembers(nil, ms)
			case "remove":
				if len(op.Value) == 0 {
					g.Members = nil // remove every member (RFC 7644 §3.5.2.2)
				}
				for _, m := range ms {
					g.Members = slices.DeleteFunc(g.Members, func(id string) bool { return id == m.Value })
				}
			}
		case memberPath.MatchString(op.Path) && op.Op == "remove":
			id := unquote(memberPath.FindStringSubmatch(op.Path)[1])
			g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == id })
		case path == "displayname" && op.Op != "remove":
			if json.Unmarshal(op.Value, &g.DisplayName) != nil {
				return bad("invalidValue", "displayName must be a string")
			}
		case path == "externalid":
			g.ExternalID = ""
			if op.Op != "remove" && json.Unmarshal(op.Value, &g.ExternalID) != nil {
				return bad("invalidValue", "externalId must be a string")
			}
		default:
			return bad("invalidPath", "unsupported path for a group")
		}
	}
	return nil
}

func addMembers(have []string, add []memberRef) []string {
	for _, m := range add {
		if m.Value != "" && !slices.Contains(have, m.Value) {
			have = append(have, m.Value)
		}
	}
	return have
}
