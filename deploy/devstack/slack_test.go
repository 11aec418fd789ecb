package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/config"
)

// TestSlackSection: `make up` turns Slack approvals on exactly when the
// bot token and signing secret are in its environment, hands the secrets
// to the broker's environment and never writes them to .dev/env.
func TestSlackSection(t *testing.T) {
	tmpl := filepath.Join("..", "dev", "custos.yaml")
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, secret, api string
		want                     bool
	}{
		{name: "no slack env"},
		{name: "token without secret", token: "xoxb-1"},
		{name: "token and secret", token: "xoxb-1", secret: "s3cret", want: true},
		{name: "with an api url", token: "xoxb-1", secret: "s3cret", api: "http://127.0.0.1:9/api/", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CUSTOS_SLACK_BOT_TOKEN", tc.token)
			t.Setenv("CUSTOS_SLACK_SIGNING_SECRET", tc.secret)
			t.Setenv("CUSTOS_SLACK_API_URL", tc.api)
			env := map[string]string{}
			os.Expand(string(b), func(k string) string {
				env[k] = "x"
				if strings.HasSuffix(k, "_PORT") {
					env[k] = "1234"
				}
				return ""
			})
			slackEnv(env)
			dir := t.TempDir()
			if err := storeEnv(UpOptions{Dir: dir}, env); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "custos.yaml")
			if err := renderConfig(tmpl, out, env); err != nil {
				t.Fatal(err)
			}
			rendered, _ := os.ReadFile(out)
			cfg, err := config.Parse(rendered)
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.Slack
			if s.Enabled != tc.want || s.Channel != "C0APPROVALS" || s.APIURL != tc.api ||
				s.BotToken != "env:CUSTOS_SLACK_BOT_TOKEN" || s.SigningSecret != "env:CUSTOS_SLACK_SIGNING_SECRET" {
				t.Errorf("slack section = %+v", s)
			}
			_, hasToken := env["CUSTOS_SLACK_BOT_TOKEN"]
			_, hasSecret := env["CUSTOS_SLACK_SIGNING_SECRET"]
			passed := hasToken && hasSecret && env["CUSTOS_SLACK_BOT_TOKEN"] == tc.token && env["CUSTOS_SLACK_SIGNING_SECRET"] == tc.secret
			if passed != tc.want || !tc.want && (hasToken || hasSecret) {
				t.Errorf("broker environment: token %q secret %q", env["CUSTOS_SLACK_BOT_TOKEN"], env["CUSTOS_SLACK_SIGNING_SECRET"])
			}
			ids := map[string]string{}
			for _, u := range cfg.Users {
				ids[u.Name] = u.SlackID
			}
			if ids["alice"] != "U0ALICE" || ids["bob"] != "U0BOB" || ids["carol"] != "U0CAROL" || ids["sam"] != "U0SAM" {
				t.Errorf("demo users' slack ids = %v", ids)
			}
			envFile := filepath.Join(dir, "env")
			if err := writeEnvFile(envFile, env); err != nil {
				t.Fatal(err)
			}
			if got := readFileString(envFile); tc.secret != "" && strings.Contains(got, tc.secret) || tc.token != "" && strings.Contains(got, tc.token) {
				t.Error(".dev/env holds a Slack secret")
			}
		})
	}
}
