package event

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// jsonEvent is the JSON shape of an event, used by the JSONL export and the
// API. Terminal bytes that are valid UTF-8 are given as "data", others as
// base64 in "data_b64".
type jsonEvent struct {
	Offset    int64    `json:"offset_ns"`
	Kind      string   `json:"kind"`
	Channel   uint32   `json:"channel,omitempty"`
	Data      *string  `json:"data,omitempty"`
	DataB64   string   `json:"data_b64,omitempty"`
	Op        string   `json:"op,omitempty"`
	Name      string   `json:"name,omitempty"`
	Text      string   `json:"text,omitempty"`
	Args      []string `json:"args,omitempty"`
	N         int64    `json:"n,omitempty"`
	Bytes     int64    `json:"bytes,omitempty"`
	Cols      uint32   `json:"cols,omitempty"`
	Rows      uint32   `json:"rows,omitempty"`
	Denied    bool     `json:"denied,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`
}

// MarshalJSON encodes the event as one JSON object with the kind's name.
func (e Event) MarshalJSON() ([]byte, error) {
	j := jsonEvent{
		Offset: int64(e.Offset), Kind: e.Kind.String(), Channel: e.Channel,
		Op: e.Op, Name: e.Name, Text: e.Text, Args: e.Args, N: e.N, Bytes: e.Bytes,
		Cols: e.Cols, Rows: e.Rows, Denied: e.Denied, Truncated: e.Truncated,
	}
	if len(e.Data) > 0 {
		if utf8.Valid(e.Data) {
			s := string(e.Data)
			j.Data = &s
		} else {
			j.DataB64 = base64.StdEncoding.EncodeToString(e.Data)
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j jsonEvent
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	k, ok := ParseKind(j.Kind)
	if !ok {
		var n uint8
		if _, err := fmt.Sscanf(j.Kind, "kind_%d", &n); err != nil {
			return fmt.Errorf("event: unknown kind %q", j.Kind)
		}
		k = Kind(n)
	}
	*e = Event{Kind: k, Offset: time.Duration(j.Offset), Channel: j.Channel, Op: j.Op,
		Name: j.Name, Text: j.Text, Args: j.Args, N: j.N, Bytes: j.Bytes, Cols: j.Cols, Rows: j.Rows,
		Denied: j.Denied, Truncated: j.Truncated}
	switch {
	case j.Data != nil:
		e.Data = []byte(*j.Data)
	case j.DataB64 != "":
		d, err := base64.StdEncoding.DecodeString(j.DataB64)
		if err != nil {
			return fmt.Errorf("event: data_b64: %w", err)
		}
		e.Data = d
	}
	return nil
}
