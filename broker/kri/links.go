package kri

import (
	"fmt"
	"net/url"

	"github.com/custos-pam/custos/broker"
)

// Links to the web UI's pages of each kind of record.

func requestLink(id string) string { return "/ui/requests/" + url.PathEscape(id) }

func sessionLink(id string) string { return "/ui/sessions/" + url.PathEscape(id) }

func verifyLink(id string) string { return "/ui/verify/" + url.PathEscape(id) }

func grantLink(g broker.Grant) string {
	if g.RequestID != "" {
		return requestLink(g.RequestID)
	}
	return "/ui/breakglass"
}

// auditLink opens the audit log at one record.
func auditLink(seq int64) string { return fmt.Sprintf("/ui/audit?after=%d&limit=1", seq-1) }

// actorLink opens the audit log at a user's records.
func actorLink(user string) string { return "/ui/audit?actor=" + url.QueryEscape(user) }

func drillLink(id string) string { return "/ui/breakglass?drill=" + url.QueryEscape(id) }

func requestRecord(r broker.Request, detail string) Record {
	return Record{Kind: KindRequest, ID: r.ID, User: r.User, Target: r.Target + "/" + r.Role, At: r.CreatedAt,
		Detail: detail, Link: requestLink(r.ID)}
}

func grantRecord(g broker.Grant, detail string) Record {
	return Record{Kind: KindGrant, ID: g.ID, User: g.User, Target: g.Target + "/" + g.Role, At: g.StartsAt,
		Detail: detail, Link: grantLink(g)}
}

func sessionRecord(s broker.Session, detail, link string) Record {
	return Record{Kind: KindSession, ID: s.ID, User: s.User, Target: s.Target, At: s.StartedAt, Detail: detail, Link: link}
}

func auditRecord(a broker.AuditRecord, detail string) Record {
	return Record{Kind: KindAudit, ID: a.ID, Seq: a.Seq, User: a.Actor, Target: a.Target, At: a.Time, Detail: detail,
		Link: auditLink(a.Seq)}
}

func userRecord(name, detail string) Record {
	return Record{Kind: KindUser, ID: name, User: name, Detail: detail, Link: actorLink(name)}
}
