package slack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// interaction is what the broker takes from an interaction payload: only
// the fields it acts on, checked for shape.
type interaction struct {
	Transport string
	Type      string
	Team      string
	User      string
	TriggerID string
	// Channel is where a private answer to the clicker goes; "" for modals.
	Channel string
	// ActionID, Value and ActionTS are the clicked button's (block_actions).
	ActionID string
	Value    string
	ActionTS string
	// CallbackID, ViewID, ViewHash, Metadata and Reason are the submitted
	// modal's (view_submission).
	CallbackID string
	ViewID     string
	ViewHash   string
	Metadata   string
	Reason     string
	// Key identifies this delivery for replay detection: a retry or a
	// replay of the same payload has the same key.
	Key string
}

// rawInteraction is the subset of Slack's payload that is read.
type rawInteraction struct {
	Type string `json:"type"`
	Team struct {
		ID string `json:"id"`
	} `json:"team"`
	User struct {
		ID     string `json:"id"`
		TeamID string `json:"team_id"`
	} `json:"user"`
	TriggerID string `json:"trigger_id"`
	Channel   struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container struct {
		ChannelID string `json:"channel_id"`
	} `json:"container"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
		ActionTS string `json:"action_ts"`
	} `json:"actions"`
	View struct {
		ID              string `json:"id"`
		Hash            string `json:"hash"`
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
		State           struct {
			Values map[string]map[string]struct {
				Value *string `json:"value"`
			} `json:"values"`
		} `json:"state"`
	} `json:"view"`
}

// parseInteraction decodes a payload. It fails on anything that is not a
// JSON object with a type and a plausible Slack user ID; the kinds the
// broker acts on are checked further by the handler.
func parseInteraction(raw []byte) (interaction, error) {
	var p rawInteraction
	if err := json.Unmarshal(raw, &p); err != nil {
		return interaction{}, fmt.Errorf("payload: %w", err)
	}
	in := interaction{Type: p.Type, Team: p.Team.ID, User: p.User.ID, TriggerID: p.TriggerID}
	if in.Team == "" {
		in.Team = p.User.TeamID
	}
	if in.Type == "" {
		return interaction{}, errors.New("payload: no type")
	}
	if !slackID(in.User) {
		return interaction{}, errors.New("payload: no valid user id")
	}
	if in.Team != "" && !slackID(in.Team) {
		return interaction{}, errors.New("payload: invalid team id")
	}
	in.Channel = p.Channel.ID
	if in.Channel == "" {
		in.Channel = p.Container.ChannelID
	}
	if in.Channel != "" && !slackID(in.Channel) {
		return interaction{}, errors.New("payload: invalid channel id")
	}
	if len(p.Actions) > 0 {
		a := p.Actions[0]
		in.ActionID, in.Value, in.ActionTS = a.ActionID, a.Value, a.ActionTS
	}
	in.CallbackID, in.ViewID, in.ViewHash, in.Metadata = p.View.CallbackID, p.View.ID, p.View.Hash, p.View.PrivateMetadata
	if v := p.View.State.Values[blockReason][inputReason].Value; v != nil {
		in.Reason = *v
	}
	if len(in.Value) > 256 || len(in.Metadata) > 3000 || len(in.Reason) > 4*maxReasonLen {
		return interaction{}, errors.New("payload: field too long")
	}
	in.Key = deliveryKey(in, raw)
	return in, nil
}

// deliveryKey names one user action. Slack gives every click and every
// submission its own trigger ID, so the same trigger ID with the same action
// is a retry or a replay; without a trigger ID the payload itself is used.
func deliveryKey(in interaction, raw []byte) string {
	h := sha256.New()
	if in.TriggerID == "" {
		h.Write([]byte("raw\x00"))
		h.Write(raw)
	} else {
		for _, f := range []string{in.Type, in.Team, in.User, in.TriggerID, in.ActionID, in.Value, in.ActionTS, in.ViewID, in.ViewHash} {
			h.Write([]byte(f))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// requestID is the request the interaction is about.
func (in interaction) requestID() string {
	if in.Type == "view_submission" {
		return in.Metadata
	}
	return in.Value
}

// slackID reports whether s looks like a Slack ID: an upper-case letter
// followed by upper-case letters and digits.
func slackID(s string) bool {
	if len(s) < 2 || len(s) > 32 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') }) < 0
}
