package slack_test

import (
	"strings"
	"testing"

	"github.com/custos-pam/custos/approvals/slack"
)

// A break-glass unseal notice carries a link button to the web UI, where
// a custodian confirms with a fresh second factor; Slack itself takes no
// confirmation.
func TestSecurityNoticeWithLink(t *testing.T) {
	e := newEnv(t)
	text := "break-glass unseal of pg-admin requested by sam: primary down <!channel> [incident INC-7]. 1 of 2 custodians confirmed"
	link := slack.Link{Text: "Review and confirm in Custos", Path: "/ui/breakglass/unseals/bgu_123"}
	if err := e.sl.SecurityNoticeWithLink(e.ctx, text, link); err != nil {
		t.Fatal(err)
	}
	// An overdue-drill notice stays plain text.
	if err := e.sl.SecurityNotice(e.ctx, ":warning: break-glass drill of pg-admin is OVERDUE"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	msgs := e.emu.Messages(securityChan)
	if len(msgs) != 3 {
		t.Fatalf("%d messages in the security channel, want 3 (notice, overdue, drain marker)", len(msgs))
	}
	m := msgs[0]
	escaped := "break-glass unseal of pg-admin requested by sam: primary down &lt;!channel&gt; [incident INC-7]. 1 of 2 custodians confirmed"
	if m.Text != escaped {
		t.Errorf("notice text = %q", m.Text)
	}
	if !strings.Contains(m.Content(), escaped) {
		t.Errorf("the notice's blocks do not show its text:\n%s", m.Content())
	}
	b := m.Buttons()
	if len(b) != 1 {
		t.Fatalf("buttons = %+v, want one", b)
	}
	if b[0].URL != "https://custos.example.test/ui/breakglass/unseals/bgu_123" || b[0].Text != "Review and confirm in Custos" ||
		b[0].ActionID != "custos_open" || b[0].Style != "primary" {
		t.Errorf("button = %+v", b[0])
	}
	if n := len(msgs[1].Buttons()); n != 0 || msgs[1].Text != ":warning: break-glass drill of pg-admin is OVERDUE" {
		t.Errorf("overdue notice = %q with %d buttons", msgs[1].Text, n)
	}

	// Slack reports the click on a link button; it is neither refused nor
	// answered.
	resp, _ := e.click("U0CAROL", m, "custos_open")
	if resp.Status != 200 {
		t.Errorf("click on the link: status %d", resp.Status)
	}
	e.drain()
	if r := e.auditRecords("slack.reject"); len(r) != 0 {
		t.Errorf("click on the link was refused: %+v", r)
	}
	if eph := e.emu.Ephemerals("U0CAROL"); len(eph) != 0 {
		t.Errorf("clicker got a reply: %q", eph[0].Text)
	}
}

// Without the broker's public URL there is nothing to link to: the notice
// goes out as text (which names the CLI command).
func TestSecurityNoticeWithLinkNoPublicURL(t *testing.T) {
	e := newEnv(t, withoutPublicURL)
	if err := e.sl.SecurityNoticeWithLink(e.ctx, "confirm with: custos breakglass confirm bgu_1",
		slack.Link{Text: "Review and confirm in Custos", Path: "/ui/breakglass/unseals/bgu_1"}); err != nil {
		t.Fatal(err)
	}
	e.drain()
	m := e.emu.Messages(securityChan)[0]
	if m.Text != "confirm with: custos breakglass confirm bgu_1" || len(m.Buttons()) != 0 {
		t.Errorf("notice %q with buttons %+v", m.Text, m.Buttons())
	}
}
