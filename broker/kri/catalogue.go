package kri

// ActionSessionVerify is the audit action of a recording's verification;
// its details name the session (session_id) and its outcome is the
// verdict.
const ActionSessionVerify = "session.verify"

// catalogue is every indicator, in dashboard order. docs/indicators.md
// describes each.
var catalogue = []def{
	{"active_grants", "Active grants", "count", "grants active now (store)", activeGrants},
	{"privileged_sessions_month", "Privileged sessions this month", "count",
		"sessions started this calendar month (UTC), per target with total duration (session index)", sessionsThisMonth},
	{"grants_without_ticket", "Grants without a ticket", "count",
		"grants active or started within the lookback, without a ticket, whose role's policy has require_ticket", grantsWithoutTicket},
	{"rubber_stamp_approvals", "Rubber-stamp approvals", "count",
		"approvals given less than indicators.rubber_stamp after the request (requests)", rubberStamps},
	{"collusion_pairs", "Mutual approval pairs", "count",
		"pairs of users who approved each other's requests within the lookback (requests)", collusionPairs},
	{"users_without_mfa", "Users without a second factor", "count",
		"enabled local users with no TOTP secret (config users)", usersWithoutMFA},
	{"users_without_mfa_ratio", "Share of users without a second factor", "ratio",
		"users_without_mfa / enabled users", usersWithoutMFARatio},
	{"stale_users", "Stale users", "count",
		"enabled users with no request within indicators.stale_after (requests)", staleUsers},
	{"dormant_accounts", "Dormant accounts", "count",
		"enabled users with no successful audited action and no session within indicators.dormant_after (audit log, sessions)", dormantAccounts},
	{"api_tokens_over_rotation", "API tokens over rotation age", "count",
		"unexpired API tokens older than indicators.token_rotation (tokens)", tokensOverRotation},
	{"sessions_without_recording", "Sessions without a verified recording", "count",
		"sessions ended within the lookback (and over 15m ago) with no sealed recording or no passing verification (session index, audit session.verify)", sessionsWithoutRecording},
	{"recordings_failing_verification", "Recordings failing verification", "count",
		"sessions whose latest verification within the lookback failed (audit session.verify)", recordingsFailingVerification},
	{"breakglass_unseals", "Break-glass unseals", "count",
		"break-glass unseal requests within the lookback, drills excluded (audit breakglass.unseal)", unseals},
	{"drills_overdue", "Overdue drills", "count",
		"break-glass and restore drills past due now (drill schedule)", drillsOverdue},
	{"drill_failures_quarter", "Failed drills this quarter", "count",
		"break-glass and restore drills started this calendar quarter (UTC) that failed (drill evidence)", drillFailuresQuarter},
	{"approval_latency_median", "Approval latency, median", "seconds",
		"request to approval, requests approved within the lookback", latencyQuantile(0.5)},
	{"approval_latency_p90", "Approval latency, 90th percentile", "seconds",
		"request to approval, requests approved within the lookback", latencyQuantile(0.9)},
	{"retrieval_pass_rate", "Five-minute retrieval pass rate", "ratio",
		"questions of the retrieval drill answered within five minutes, runs within the lookback (custos drill retrieval, state drill.retrieval)", retrievalPassRate},
}
