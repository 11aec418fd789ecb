package access

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/policy"
)

// isApprover reports whether user is an eligible approver of target/role.
func (s *Service) isApprover(user, target, role string) bool {
	pol, err := s.policyFor(target, role)
	return err == nil && policy.IsApprover(pol, s.dir, user)
}

// MayRequest reports whether user is a requester of target/role, the
// first thing a request is checked for (GET /api/v1/targets lists only
// these).
func (s *Service) MayRequest(user, target, role string) bool {
	pol, err := s.policyFor(target, role)
	return err == nil && policy.IsRequester(pol, s.dir, user)
}

// RequestFacts are the facts about user and request r.
func (s *Service) RequestFacts(user string, r broker.Request) Facts {
	return Facts{Security: s.isSecurityAdmin(user), Owner: r.User == user, Approver: s.isApprover(user, r.Target, r.Role)}
}

// GrantFacts are the facts about user and grant g.
func (s *Service) GrantFacts(user string, g broker.Grant) Facts {
	return Facts{Security: s.isSecurityAdmin(user), Owner: g.User == user, Approver: s.isApprover(user, g.Target, g.Role),
		Approved: slices.Contains(g.Approvers, user)}
}

// SessionFacts are the facts about user and session sess; g is the
// session's grant when it has one.
func (s *Service) SessionFacts(user string, sess broker.Session, g *broker.Grant) Facts {
	f := Facts{Security: s.isSecurityAdmin(user), Owner: sess.User == user}
	if g != nil {
		f.Approved = slices.Contains(g.Approvers, user)
	}
	return f
}

// UserFacts are the facts about user alone (for actions on no particular
// thing, such as reading the audit log).
func (s *Service) UserFacts(user string) Facts { return Facts{Security: s.isSecurityAdmin(user)} }

// May reports whether user may take action a on nothing in particular.
func (s *Service) May(user string, a Action) bool { return Allowed(a, s.UserFacts(user)) }

// CheckDecide refuses a vote the rules forbid before it is cast: on one's
// own request (self_approval), or by someone who is not an eligible
// approver (not_approver). Slack calls it before asking a denier for a
// reason; Decide applies the same rules through policy.
func (s *Service) CheckDecide(user string, r broker.Request) error {
	f := s.RequestFacts(user, r)
	switch {
	case f.Owner:
		return refuse(broker.KindForbidden, policy.CodeSelfApproval, "%s may not decide their own request %s", user, r.ID)
	case !Allowed(DecideRequest, f):
		return refuse(broker.KindForbidden, policy.CodeNotApprover, "%s is not an approver for %s/%s", user, r.Target, r.Role)
	}
	return nil
}

// ViewRequestAs returns request id when user may see it.
func (s *Service) ViewRequestAs(ctx context.Context, user, id string) (broker.Request, error) {
	r, err := s.GetRequest(ctx, id)
	if err != nil {
		return r, err
	}
	if !Allowed(ViewRequest, s.RequestFacts(user, r)) {
		return broker.Request{}, refuse(broker.KindForbidden, "forbidden",
			"you may see your own requests and those you may decide, not %s", id)
	}
	return r, nil
}

// ViewGrantAs returns grant id when user may see it.
func (s *Service) ViewGrantAs(ctx context.Context, user, id string) (broker.Grant, error) {
	g, err := s.GetGrant(ctx, id)
	if err != nil {
		return g, err
	}
	if !Allowed(ViewGrant, s.GrantFacts(user, g)) {
		return broker.Grant{}, refuse(broker.KindForbidden, "forbidden",
			"you may see your own grants and those of roles you approve, not %s", id)
	}
	return g, nil
}

// VisibleRequests lists the requests matching f that user may see.
func (s *Service) VisibleRequests(ctx context.Context, user string, f broker.RequestFilter) ([]broker.Request, error) {
	rs, err := s.ListRequests(ctx, f)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rs, func(r broker.Request) bool { return !Allowed(ViewRequest, s.RequestFacts(user, r)) }), nil
}

// VisibleGrants lists the grants matching f that user may see.
func (s *Service) VisibleGrants(ctx context.Context, user string, f broker.GrantFilter) ([]broker.Grant, error) {
	gs, err := s.ListGrants(ctx, f)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(gs, func(g broker.Grant) bool { return !Allowed(ViewGrant, s.GrantFacts(user, g)) }), nil
}

// AccessAtAs is AccessAt limited to the grants user may see: everything
// for security and auditors, otherwise one's own and those of roles one
// approves.
func (s *Service) AccessAtAs(ctx context.Context, user, target string, at time.Time) ([]broker.Grant, error) {
	gs, err := s.AccessAt(ctx, target, at)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(gs, func(g broker.Grant) bool { return !Allowed(ViewGrant, s.GrantFacts(user, g)) }), nil
}

// SessionRead names a read of a session for the audit record of a refusal.
type SessionRead struct {
	// Action is the rule that applies: ViewSession, ExportSession or
	// WatchSession.
	Action Action
	// Purpose is what the read is for ("metadata", "web replay", "live
	// view"); Via the channel (cli, web).
	Purpose, Via string
}

// SessionAs loads session id when user may take read.Action on it. A
// refusal is audited as a denied session.recording.read with the purpose.
func (s *Service) SessionAs(ctx context.Context, user, id string, read SessionRead) (broker.Session, error) {
	var sess broker.Session
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		sess, err = tx.GetSession(id)
		return err
	})
	if errors.Is(err, broker.ErrNotFound) {
		return sess, refuse(broker.KindNotFound, "not_found", "no session %s", id)
	}
	if err != nil {
		return sess, err
	}
	var g *broker.Grant
	if sess.GrantID != "" {
		if gr, err := s.GetGrant(ctx, sess.GrantID); err == nil {
			g = &gr
		}
	}
	if !Allowed(read.Action, s.SessionFacts(user, sess, g)) {
		d := map[string]any{"session_id": sess.ID, "user": sess.User, "purpose": read.Purpose}
		if read.Via != "" {
			d["via"] = read.Via
		}
		if _, err := s.audit.Append(ctx, audit.Entry{Actor: user, Action: "session.recording.read", Target: sess.Target,
			Outcome: broker.OutcomeDenied, Reason: "not the session's user, an approver of its grant, or security",
			Details: d}); err != nil {
			s.log.Error("audit append failed", "action", "session.recording.read", "err", err)
		}
		return broker.Session{}, refuse(broker.KindForbidden, "forbidden", "you may not open this session's recording")
	}
	return sess, nil
}

// VisibleSessions lists the sessions matching f that user may see:
// every one for security, otherwise their own and those of grants they
// approved, newest first.
func (s *Service) VisibleSessions(ctx context.Context, user string, f broker.SessionFilter) ([]broker.Session, error) {
	list := func(f broker.SessionFilter) ([]broker.Session, error) {
		var out []broker.Session
		err := s.store.View(ctx, func(tx broker.Tx) error {
			var err error
			out, err = tx.ListSessions(f)
			return err
		})
		return out, err
	}
	if s.isSecurityAdmin(user) {
		return list(f)
	}
	seen := map[string]bool{}
	var out []broker.Session
	add := func(ss []broker.Session) {
		for _, x := range ss {
			if !seen[x.ID] {
				seen[x.ID] = true
				out = append(out, x)
			}
		}
	}
	if f.User == "" || f.User == user {
		own := f
		own.User = user
		ss, err := list(own)
		if err != nil {
			return nil, err
		}
		add(ss)
	}
	grants, err := s.ListGrants(ctx, broker.GrantFilter{Target: f.Target, User: f.User, Limit: 500})
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		if g.User == user || !Allowed(ViewSession, s.SessionFacts(user, broker.Session{User: g.User}, &g)) {
			continue
		}
		gf := f
		gf.GrantID = g.ID
		ss, err := list(gf)
		if err != nil {
			return nil, err
		}
		add(ss)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
