package slacktest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// blockError is Slack's answer to malformed Block Kit: invalid_blocks with
// the reason in response_metadata.messages.
func blockError(format string, args ...any) *apiError {
	return &apiError{code: "invalid_blocks", extra: map[string]any{
		"response_metadata": map[string]any{"messages": []string{"[ERROR] " + fmt.Sprintf(format, args...)}},
	}}
}

type rawBlock struct {
	Type     string            `json:"type"`
	BlockID  string            `json:"block_id"`
	Text     json.RawMessage   `json:"text"`
	Fields   []json.RawMessage `json:"fields"`
	Elements []json.RawMessage `json:"elements"`
	Label    json.RawMessage   `json:"label"`
	Element  json.RawMessage   `json:"element"`
	Optional bool              `json:"optional"`
}

type rawElement struct {
	Type      string          `json:"type"`
	Text      json.RawMessage `json:"text"`
	ActionID  string          `json:"action_id"`
	Value     string          `json:"value"`
	URL       string          `json:"url"`
	Style     string          `json:"style"`
	Confirm   json.RawMessage `json:"confirm"`
	Multiline bool            `json:"multiline"`
	MaxLength int             `json:"max_length"`
}

// validateBlocks checks the Block Kit limits Slack enforces for the block
// types the broker uses. Input blocks are allowed in modals only.
func validateBlocks(raw json.RawMessage, modal bool) *apiError {
	var blocks []rawBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return fail("invalid_blocks_format")
	}
	limit := 50
	if modal {
		limit = 100
	}
	if len(blocks) > limit {
		return blockError("must provide an array of no more than %d items", limit)
	}
	ids := map[string]bool{}
	actionIDs := map[string]bool{}
	for i, b := range blocks {
		if b.BlockID != "" {
			if len(b.BlockID) > 255 || ids[b.BlockID] {
				return blockError("duplicate or too long block_id [json-pointer:/blocks/%d/block_id]", i)
			}
			ids[b.BlockID] = true
		}
		if e := validateBlock(i, b, modal, actionIDs); e != nil {
			return e
		}
	}
	return nil
}

func validateBlock(i int, b rawBlock, modal bool, actionIDs map[string]bool) *apiError {
	switch b.Type {
	case "header":
		if _, e := textObject(b.Text, true, 150); e != nil {
			return blockError("header text: %s [json-pointer:/blocks/%d/text]", e.code, i)
		}
	case "section":
		if b.Text == nil && len(b.Fields) == 0 {
			return blockError("section needs text or fields [json-pointer:/blocks/%d]", i)
		}
		if b.Text != nil {
			if _, e := textObject(b.Text, false, 3000); e != nil {
				return blockError("section text: %s [json-pointer:/blocks/%d/text]", e.code, i)
			}
		}
		if len(b.Fields) > 10 {
			return blockError("no more than 10 fields [json-pointer:/blocks/%d/fields]", i)
		}
		for j, f := range b.Fields {
			if _, e := textObject(f, false, 2000); e != nil {
				return blockError("field: %s [json-pointer:/blocks/%d/fields/%d]", e.code, i, j)
			}
		}
	case "actions":
		if len(b.Elements) == 0 || len(b.Elements) > 25 {
			return blockError("actions need 1 to 25 elements [json-pointer:/blocks/%d/elements]", i)
		}
		for j, raw := range b.Elements {
			if e := validateButton(raw, actionIDs); e != nil {
				return blockError("%s [json-pointer:/blocks/%d/elements/%d]", e.code, i, j)
			}
		}
	case "context":
		if len(b.Elements) == 0 || len(b.Elements) > 10 {
			return blockError("context needs 1 to 10 elements [json-pointer:/blocks/%d/elements]", i)
		}
		for j, raw := range b.Elements {
			if _, e := textObject(raw, false, 3000); e != nil {
				return blockError("context element: %s [json-pointer:/blocks/%d/elements/%d]", e.code, i, j)
			}
		}
	case "divider":
	case "input":
		if !modal {
			return blockError("input blocks are only allowed in modals [json-pointer:/blocks/%d]", i)
		}
		if _, e := textObject(b.Label, true, 2000); e != nil {
			return blockError("input label: %s [json-pointer:/blocks/%d/label]", e.code, i)
		}
		var el rawElement
		if json.Unmarshal(b.Element, &el) != nil || el.Type != "plain_text_input" || el.ActionID == "" || el.MaxLength > 3000 {
			return blockError("input element must be a plain_text_input with an action_id [json-pointer:/blocks/%d/element]", i)
		}
	default:
		return blockError("unsupported block type %q [json-pointer:/blocks/%d]", b.Type, i)
	}
	return nil
}

func validateButton(raw json.RawMessage, actionIDs map[string]bool) *apiError {
	var el rawElement
	if json.Unmarshal(raw, &el) != nil || el.Type != "button" {
		return fail("only buttons are emulated")
	}
	if _, e := textObject(el.Text, true, 75); e != nil {
		return fail("button text " + e.code)
	}
	if el.ActionID != "" {
		if len(el.ActionID) > 255 || actionIDs[el.ActionID] {
			return fail("duplicate or too long action_id")
		}
		actionIDs[el.ActionID] = true
	}
	if len(el.Value) > 2000 || len(el.URL) > 3000 {
		return fail("value or url too long")
	}
	if el.URL != "" && !strings.HasPrefix(el.URL, "https://") && !strings.HasPrefix(el.URL, "http://") {
		return fail("url must be http(s)")
	}
	if el.Style != "" && el.Style != "primary" && el.Style != "danger" {
		return fail("style must be primary or danger")
	}
	if el.Confirm != nil {
		var c struct {
			Title, Text, Confirm, Deny json.RawMessage
		}
		if json.Unmarshal(el.Confirm, &c) != nil {
			return fail("confirm must be an object")
		}
		for _, t := range []struct {
			raw   json.RawMessage
			plain bool
			max   int
		}{{c.Title, true, 100}, {c.Text, false, 300}, {c.Confirm, true, 30}, {c.Deny, true, 30}} {
			if _, e := textObject(t.raw, t.plain, t.max); e != nil {
				return fail("confirm " + e.code)
			}
		}
	}
	return nil
}

// textObject checks a text object and returns its text.
func textObject(raw json.RawMessage, plainOnly bool, max int) (string, *apiError) {
	var t struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if raw == nil || json.Unmarshal(raw, &t) != nil {
		return "", fail("missing text object")
	}
	switch {
	case t.Type != "plain_text" && t.Type != "mrkdwn":
		return "", fail("text type must be plain_text or mrkdwn")
	case plainOnly && t.Type != "plain_text":
		return "", fail("must be plain_text")
	case t.Text == "":
		return "", fail("text must not be empty")
	case utf8.RuneCountInString(t.Text) > max:
		return "", fail(fmt.Sprintf("text longer than %d characters", max))
	}
	return t.Text, nil
}

func hasInput(raw json.RawMessage) bool {
	var blocks []rawBlock
	_ = json.Unmarshal(raw, &blocks)
	for _, b := range blocks {
		if b.Type == "input" {
			return true
		}
	}
	return false
}

// Button is a button found in a message.
type Button struct {
	BlockID, ActionID, Value, URL, Style, Text string
}

// Buttons returns the message's buttons.
func (m Message) Buttons() []Button {
	var blocks []rawBlock
	_ = json.Unmarshal(m.Blocks, &blocks)
	var out []Button
	for _, b := range blocks {
		if b.Type != "actions" {
			continue
		}
		for _, raw := range b.Elements {
			var el rawElement
			if json.Unmarshal(raw, &el) != nil || el.Type != "button" {
				continue
			}
			var t struct{ Text string }
			_ = json.Unmarshal(el.Text, &t)
			out = append(out, Button{BlockID: b.BlockID, ActionID: el.ActionID, Value: el.Value, URL: el.URL, Style: el.Style, Text: t.Text})
		}
	}
	return out
}

// Content returns all the text a reader sees in the message: the
// notification text and every text object of every block, one per line.
func (m Message) Content() string {
	var blocks []rawBlock
	_ = json.Unmarshal(m.Blocks, &blocks)
	lines := []string{m.Text}
	add := func(raw json.RawMessage) {
		var t struct{ Text string }
		if raw != nil && json.Unmarshal(raw, &t) == nil && t.Text != "" {
			lines = append(lines, t.Text)
		}
	}
	for _, b := range blocks {
		add(b.Text)
		for _, f := range b.Fields {
			add(f)
		}
		for _, e := range b.Elements {
			var el rawElement
			if json.Unmarshal(e, &el) == nil && el.Type == "button" {
				add(el.Text)
				continue
			}
			add(e)
		}
	}
	return strings.Join(lines, "\n")
}
