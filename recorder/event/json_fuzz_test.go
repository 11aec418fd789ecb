package event

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzEventJSON decodes untrusted JSON events (the API's and the JSONL
// export's shape, read by the CLI): nothing may panic, and whatever
// decodes re-encodes to JSON that decodes to the same event.
func FuzzEventJSON(f *testing.F) {
	for _, e := range sample() {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"kind_250","data_b64":"AAE="}`))
	f.Add([]byte(`{"kind":"output","data":"x","data_b64":"!!"}`))
	f.Add([]byte(`{"kind":"kind_%d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		var e2 Event
		if err := json.Unmarshal(again, &e2); err != nil {
			t.Fatalf("decode re-encoded %s: %v", again, err)
		}
		if len(e.Data) == 0 && len(e2.Data) == 0 {
			e.Data, e2.Data = nil, nil
		}
		if len(e.Args) == 0 && len(e2.Args) == 0 {
			e.Args, e2.Args = nil, nil
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, e2)
		}
	})
}
