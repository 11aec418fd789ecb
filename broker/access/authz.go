package access

// Every "who may see or do this" rule of the broker is written once, in
// Allowed. Channels (the HTTP API, the web UI's websockets, Slack) and
// services (break-glass) look up the facts about the caller and ask
// Allowed; none of them decides on its own.

// Action is something a caller may want to see or do.
type Action string

// The actions the rules know.
const (
	// ViewRequest: read one access request (its reason, ticket, votes).
	ViewRequest Action = "request.view"
	// ListAllRequests: list every request, not only one's own and those
	// one may decide.
	ListAllRequests Action = "request.list_all"
	// DecideRequest: approve or deny a request.
	DecideRequest Action = "request.decide"
	// CancelRequest: withdraw a pending request.
	CancelRequest Action = "request.cancel"
	// ViewGrant: read one grant (window, approvers, reason, ticket); it is
	// also what decides which grants "who could reach target X" shows.
	ViewGrant Action = "grant.view"
	// RevokeGrant: end an active grant now.
	RevokeGrant Action = "grant.revoke"
	// ViewSession: a recorded session's metadata and verification.
	ViewSession Action = "session.view"
	// ExportSession: replay, export or take the evidence bundle of a
	// recording.
	ExportSession Action = "session.export"
	// WatchSession: watch a running session live.
	WatchSession Action = "session.watch"
	// TerminateSession: end a running session.
	TerminateSession Action = "session.terminate"
	// ReadAudit: read, verify and export the audit log and its saved
	// views.
	ReadAudit Action = "audit.read"
	// ExportEvidence: take the evidence bundle of a target for a period,
	// and record retrieval drills.
	ExportEvidence Action = "evidence.export"
	// ShareEvidence: create, list and revoke read-only share links to an
	// evidence bundle or one recording.
	ShareEvidence Action = "evidence.share"
	// ListUsers: list every user with their sources, groups, factors and
	// last activity (custos users).
	ListUsers Action = "user.list"
	// ViewBreakGlass: see a break-glass account, its drills and reports,
	// and close it.
	ViewBreakGlass Action = "breakglass.view"
	// UnsealBreakGlass: ask to unseal, confirm an unseal, report an
	// out-of-band use, start a drill.
	UnsealBreakGlass Action = "breakglass.unseal"
	// ViewHold: see a statement a guardrail holds for approval (its text,
	// session, row estimate).
	ViewHold Action = "hold.view"
	// DecideHold: approve or deny a held statement.
	DecideHold Action = "hold.decide"
	// ViewReview: list, read and export access reviews.
	ViewReview Action = "review.view"
	// ConductReview: start an access review, attest or flag its lines
	// and sign its attestation.
	ConductReview Action = "review.conduct"
	// ViewIndicators: read the key risk indicators, the records behind
	// them and the actions their limits opened.
	ViewIndicators Action = "indicators.view"
	// CloseIndicatorAction: close an action a limit crossing opened.
	CloseIndicatorAction Action = "indicators.close_action"
	// ProfileBroker: read the broker's runtime profiles (CPU, heap,
	// goroutines: /api/v1/debug/pprof, when listen.pprof is on).
	ProfileBroker Action = "broker.profile"
)

// Facts are what the caller's service looked up about the caller and the
// thing asked about. A fact that does not apply to the thing is false.
type Facts struct {
	// Security: the caller is in security_admins (security staff and
	// auditors).
	Security bool
	// Owner: the caller made the request, holds the grant or ran the
	// session.
	Owner bool
	// Approver: the caller is an eligible approver of the role the
	// request, grant or session is for (named in its policy's approvers,
	// directly or through a group).
	Approver bool
	// Approved: the caller approved the grant the thing belongs to (is
	// among its approvers; for a break-glass grant, the custodians who
	// confirmed).
	Approved bool
	// Custodian: the caller is a custodian of the break-glass account.
	Custodian bool
	// Reviewer: the caller is one of the configured access reviewers
	// (reviews.reviewers, by default the security admins).
	Reviewer bool
}

// Allowed reports whether a caller with facts f may take action a. An
// action it does not know is refused.
func Allowed(a Action, f Facts) bool {
	switch a {
	case ViewRequest:
		// Own requests, those one may decide, everything for security.
		return f.Security || f.Owner || f.Approver
	case ListAllRequests, TerminateSession, ReadAudit, ExportEvidence, ShareEvidence, ViewIndicators, CloseIndicatorAction, ListUsers, ProfileBroker:
		return f.Security
	case DecideRequest:
		// Never one's own; the policy then checks the vote itself.
		return f.Approver && !f.Owner
	case CancelRequest:
		return f.Owner
	case ViewGrant:
		return f.Security || f.Owner || f.Approver || f.Approved
	case RevokeGrant:
		return f.Security || f.Owner || f.Approver
	case ViewSession, ExportSession, WatchSession:
		// The session's user, the approvers of its grant, security.
		return f.Security || f.Owner || f.Approved
	case ViewBreakGlass:
		return f.Security || f.Custodian
	case UnsealBreakGlass:
		return f.Custodian
	case ViewHold:
		return f.Security || f.Owner || f.Approver
	case DecideHold:
		// An approver of the session's role, never the session's own user.
		return f.Approver && !f.Owner
	case ViewReview:
		return f.Security || f.Reviewer
	case ConductReview:
		return f.Reviewer
	}
	return false
}
