// Package slack collects approvals in Slack. It posts each access request
// to the target's approval channel (and, when policy asks, to eligible
// approvers by DM) as a Block Kit message with Approve and Deny buttons,
// keeps every such message in step with the request through chat.update,
// DMs the requester when the request is decided, reminds approvers before a
// request expires and posts security notices for break-glass and drills.
//
// Clicks arrive over two transports that share one handler: the signed
// HTTP endpoint POST /slack/interactions (X-Slack-Signature checked in
// constant time, five-minute timestamp window) and Socket Mode. A click
// counts only once: a replayed or retried delivery is audited as
// slack.replay and changes nothing. It counts only after the Slack user maps
// to exactly one Custos identity; then access.Service.Decide applies the
// usual rules. Every refusal is audited and answered privately to the
// clicker; the shared message never claims a decision that was not made.
//
// Everything Slack is told goes through a durable outbox in the state
// store, so the access service never waits for Slack: requests work through
// the web UI and CLI while Slack is down, and what was queued is delivered
// once Slack answers, with backoff and Retry-After honoured. See outbox.go
// for the delivery guarantees and the one crash window, and docs/slack.md
// for setup.
package slack
