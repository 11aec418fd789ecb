package scim

import "net/http"

// The discovery endpoints (RFC 7644 §4) say what this server supports:
// PATCH yes, filter yes (eq tests only), bulk, sort, etag and password
// change no; authentication by an OAuth-style bearer token.

func (h *Handler) serviceProviderConfig(w http.ResponseWriter, _ *http.Request) {
	no := map[string]bool{"supported": false}
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":        []string{schemaSPC},
		"patch":          map[string]bool{"supported": true},
		"bulk":           map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":         map[string]any{"supported": true, "maxResults": maxPageSize},
		"changePassword": no,
		"sort":           no,
		"etag":           no,
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "Bearer token",
			"description": "The token configured as identity.scim.token", "primary": true}},
		"meta": map[string]string{"resourceType": "ServiceProviderConfig", "location": h.base + "/ServiceProviderConfig"},
	})
}

func (h *Handler) resourceTypes(w http.ResponseWriter, r *http.Request) {
	rt := func(name, endpoint, schema string) any {
		return map[string]any{"schemas": []string{schemaResType}, "id": name, "name": name, "endpoint": endpoint, "schema": schema,
			"meta": map[string]string{"resourceType": "ResourceType", "location": h.base + "/ResourceTypes/" + name}}
	}
	writeList(w, r, []any{rt("User", "/Users", schemaUser), rt("Group", "/Groups", schemaGroup)})
}

func (h *Handler) schemas(w http.ResponseWriter, r *http.Request) {
	attr := func(name, typ string, required bool) map[string]any {
		return map[string]any{"name": name, "type": typ, "multiValued": false, "required": required, "mutability": "readWrite", "returned": "default"}
	}
	sc := func(id, name string, attrs ...map[string]any) any {
		return map[string]any{"schemas": []string{schemaSchema}, "id": id, "name": name, "attributes": attrs,
			"meta": map[string]string{"resourceType": "Schema", "location": h.base + "/Schemas/" + id}}
	}
	members := attr("members", "complex", false)
	members["multiValued"] = true
	emails := attr("emails", "complex", false)
	emails["multiValued"] = true
	writeList(w, r, []any{
		sc(schemaUser, "User", attr("userName", "string", true), attr("externalId", "string", false), attr("displayName", "string", false), emails, attr("active", "boolean", false)),
		sc(schemaGroup, "Group", attr("displayName", "string", true), attr("externalId", "string", false), members),
	})
}
