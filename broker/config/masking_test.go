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
