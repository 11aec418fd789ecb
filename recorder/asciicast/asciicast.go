// Package asciicast writes asciicast v2 files (the asciinema format): a
// JSON header line, then one [time, type, data] line per event. Output
// that splits a UTF-8 sequence across events is joined before encoding, as
// asciinema's own recorder does.
package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

type heldBytes struct {
	b []byte
	t time.Duration
}

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Duration  float64           `json:"duration,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Event types.
const (
	TypeOutput = "o"
	TypeInput  = "i"
	TypeResize = "r"
	TypeMarker = "m"
)

// Encoder writes one asciicast v2 file.
type Encoder struct {
	w    *bufio.Writer
	last time.Duration
	// held are the bytes of an incomplete UTF-8 sequence per event type.
	held map[string]heldBytes
	line bytes.Buffer
	enc  *json.Encoder
	err  error
}

// NewEncoder writes the header and returns an encoder for the events.
// Version defaults to 2 and the size to 80x24.
func NewEncoder(w io.Writer, h Header) (*Encoder, error) {
	if h.Version == 0 {
		h.Version = 2
	}
	if h.Width <= 0 {
		h.Width = 80
	}
	if h.Height <= 0 {
		h.Height = 24
	}
	e := &Encoder{w: bufio.NewWriter(w), held: map[string]heldBytes{}}
	e.enc = json.NewEncoder(&e.line)
	e.enc.SetEscapeHTML(false)
	if err := e.enc.Encode(h); err != nil {
		return nil, fmt.Errorf("asciicast: header: %w", err)
	}
	if _, err := e.w.Write(e.line.Bytes()); err != nil {
		return nil, fmt.Errorf("asciicast: %w", err)
	}
	return e, nil
}

// Output writes terminal output at offset t.
func (e *Encoder) Output(t time.Duration, p []byte) error { return e.text(t, TypeOutput, p) }

// Input writes terminal input at offset t.
func (e *Encoder) Input(t time.Duration, p []byte) error { return e.text(t, TypeInput, p) }

// Resize writes a terminal resize at offset t.
func (e *Encoder) Resize(t time.Duration, cols, rows uint32) error {
	return e.event(t, TypeResize, fmt.Sprintf("%dx%d", cols, rows))
}

// Marker writes a marker (a label shown by players) at offset t.
func (e *Encoder) Marker(t time.Duration, label string) error {
	return e.event(t, TypeMarker, label)
}

func (e *Encoder) text(t time.Duration, typ string, p []byte) error {
	if h := e.held[typ]; len(h.b) > 0 {
		p = append(h.b, p...)
		delete(e.held, typ)
	}
	if n := incompleteTail(p); n > 0 {
		e.held[typ] = heldBytes{b: append([]byte(nil), p[len(p)-n:]...), t: t}
		p = p[:len(p)-n]
	}
	if len(p) == 0 {
		return e.err
	}
	return e.event(t, typ, string(p))
}

// incompleteTail returns how many bytes at the end of p start a UTF-8
// sequence that is not complete yet.
func incompleteTail(p []byte) int {
	for n := 1; n <= 3 && n <= len(p); n++ {
		c := p[len(p)-n]
		if c < 0x80 {
			return 0
		}
		if utf8.RuneStart(c) {
			need := 0
			switch {
			case c&0xe0 == 0xc0:
				need = 2
			case c&0xf0 == 0xe0:
				need = 3
			case c&0xf8 == 0xf0:
				need = 4
			}
			if need > n {
				return n
			}
			return 0
		}
	}
	return 0
}

func (e *Encoder) event(t time.Duration, typ, data string) error {
	if e.err != nil {
		return e.err
	}
	if t < e.last {
		t = e.last
	}
	e.last = t
	e.line.Reset()
	e.line.WriteByte('[')
	e.line.WriteString(strconv.FormatFloat(t.Seconds(), 'f', 6, 64))
	e.line.WriteString(`, "`)
	e.line.WriteString(typ)
	e.line.WriteString(`", `)
	if err := e.enc.Encode(data); err != nil { // invalid UTF-8 becomes U+FFFD
		e.err = fmt.Errorf("asciicast: %w", err)
		return e.err
	}
	b := e.line.Bytes()
	b = append(b[:len(b)-1], ']', '\n') // Encode ended the string with '\n'
	if _, err := e.w.Write(b); err != nil {
		e.err = fmt.Errorf("asciicast: %w", err)
	}
	return e.err
}

// Close writes any held bytes (as replacement characters) and flushes.
func (e *Encoder) Close() error {
	for _, typ := range []string{TypeOutput, TypeInput} {
		if h := e.held[typ]; len(h.b) > 0 {
			delete(e.held, typ)
			e.event(h.t, typ, string(h.b))
		}
	}
	if e.err != nil {
		return e.err
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("asciicast: %w", err)
	}
	return nil
}
