package scim

import (
	"reflect"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []term
		bad  bool
	}{
		{in: ``},
		{in: `userName eq "alice@example.org"`, want: []term{{"username", "alice@example.org"}}},
		{in: `externalId eq "00u1"`, want: []term{{"externalid", "00u1"}}},
		{in: `displayName eq "prod dbas"`, want: []term{{"displayname", "prod dbas"}}},
		{in: `USERNAME EQ "a"`, want: []term{{"username", "a"}}},
		{in: `userName eq "a and b"`, want: []term{{"username", "a and b"}}},
		{in: `userName eq "q\"x"`, want: []term{{"username", `q"x`}}},
		{in: `id eq "g1" and members[value eq "u1"]`, want: []term{{"id", "g1"}, {"members.value", "u1"}}},
		{in: `userName sw "a"`, bad: true},
		{in: `userName eq "a" or userName eq "b"`, bad: true},
		{in: `userName pr`, bad: true},
		{in: `userName eq a`, bad: true},
	} {
		got, err := parseFilter(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if !tc.bad && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}
