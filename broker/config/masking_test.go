package config

import (
	"strings"
	"testing"
)

func TestMaskingConfigValidate(t *testing.T) {
	withMasking := func(dict, masking string) string {
		s := minimal + dict
		return strings.Replace(s, "      - name: readonly\n", "      - name: readonly\n        masking: "+masking+"\n", 1)
	}
	const dict = `
data_dictionary:
  hash_key: "k"
  classifications:
    - {name: subject_id, columns: ["*.*.subject_id"], values: ['^S-[0-9]+$'], keep_prefix: 2}
    - {name: dob, columns: ["public.subjects.dob"]}
`
	for _, tc := range []struct {
		name, dict, masking, want string
	}{
		{"valid", dict, "{subject_id: hash, dob: mask, unknown: \"null\"}", ""},
		{"bare null", dict, "{unknown: null}", `masking.unknown: must be pass, mask, hash or "null" (quote null`},
		{"no masking", dict, "{}", ""},
		{"bad action", dict, "{subject_id: hide}", "targets[0].roles[0].masking.subject_id: must be pass, mask, hash or null"},
		{"unknown classification", dict, "{ssn: mask}", `masking.ssn: unknown classification "ssn"`},
		{"hash without key", strings.Replace(dict, `hash_key: "k"`, "", 1), "{subject_id: hash}", "data_dictionary.hash_key: required when a role's masking uses hash"},
		{"bad column pattern", strings.Replace(dict, `"*.*.subject_id"`, `"subject_id"`, 1), "{}", "classifications[0].columns[0]: must be schema.table.column"},
		{"bad glob", strings.Replace(dict, `"*.*.subject_id"`, `"*.[.x"`, 1), "{}", "classifications[0].columns[0]: must be schema.table.column"},
		{"bad regexp", strings.Replace(dict, `'^S-[0-9]+$'`, `'^S-[0-9+$'`, 1), "{}", "classifications[0].values[0]: invalid regular expression"},
		{"reserved name", strings.Replace(dict, "name: dob", "name: unknown", 1), "{}", `classifications[1].name: "unknown" is reserved`},
		{"duplicate", strings.Replace(dict, "name: dob", "name: subject_id", 1), "{}", `duplicate classification "subject_id"`},
		{"no patterns", dict + "    - {name: empty}\n", "{}", "classifications[2]: needs at least one column or value pattern"},
		{"sample", dict, "{subject_id: mask}\n        result_sample: 5", ""},
		{"sample without masking", dict, "{}\n        result_sample: 5", "result_sample: only for roles with masking rules"},
		{"sample too large", dict, "{subject_id: mask}\n        result_sample: 5000", "result_sample: must be between 0 and 1000"},
		{"negative prefix", strings.Replace(dict, "keep_prefix: 2", "keep_prefix: -1", 1), "{}", "keep_prefix: must be >= 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(withMasking(tc.dict, tc.masking)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMaskingUnmaskRole(t *testing.T) {
	const dict = `
data_dictionary:
  classifications:
    - {name: subject_id, columns: ["*.*.subject_id"]}
    - {name: dob, columns: ["*.*.dob"]}
`
	base := strings.Replace(minimal+dict, "      - name: readonly\n", "      - name: readonly\n        masking: {subject_id: mask, dob: \"null\"}\n", 1)
	withRole := func(role string) string {
		return strings.Replace(base, "targets:\n  - name: db\n    kind: postgres\n    address: 127.0.0.1:5432\n    roles:\n",
			"targets:\n  - name: db\n    kind: postgres\n    address: 127.0.0.1:5432\n    roles:\n"+role, 1)
	}
	c, err := Parse([]byte(withRole("      - {name: readonly-unmask, unmask: {role: readonly, classifications: [subject_id]}, policy: {approvers: [approvers]}}\n")))
	if err != nil {
		t.Fatal(err)
	}
	tg := &c.Targets[0]
	r, _ := tg.FindRole("readonly-unmask")
	rules, un := tg.MaskingRules(r)
	if rules["subject_id"] != MaskPass || rules["dob"] != MaskNull || len(un) != 1 {
		t.Fatalf("rules %v unmasked %v", rules, un)
	}
	if b, _ := tg.FindRole("readonly"); b.Masking["subject_id"] != MaskMask {
		t.Fatal("the base role's rules changed")
	}
	for _, tc := range []struct{ role, want string }{
		{"      - {name: u, unmask: {role: nope, classifications: [subject_id]}, policy: {approvers: [approvers]}}\n", `unmask.role: unknown role "nope"`},
		{"      - {name: u, unmask: {role: readonly, classifications: [ssn]}, policy: {approvers: [approvers]}}\n", `unmask.classifications[0]: unknown classification "ssn"`},
		{"      - {name: u, unmask: {role: readonly}, policy: {approvers: [approvers]}}\n", "unmask.classifications: list the classifications"},
		{"      - {name: u, masking: {dob: pass}, unmask: {role: readonly, classifications: [dob]}, policy: {approvers: [approvers]}}\n", "remove masking"},
		{"      - {name: plain, policy: {approvers: [approvers]}}\n      - {name: u, unmask: {role: plain, classifications: [dob]}, policy: {approvers: [approvers]}}\n", `role "plain" has no masking rules`},
	} {
		if _, err := Parse([]byte(withRole(tc.role))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.role, err, tc.want)
		}
	}
}
