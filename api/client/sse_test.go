package client

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSSEReader(t *testing.T) {
	in := ": necos events\n\nid: 7\nevent: part.ready\ndata: {\"a\":\ndata: 1}\n\n: heartbeat\n\ndata: plain\n\nevent: partial"
	r := newSSEReader(strings.NewReader(in))
	name, id, data, err := r.next()
	if err != nil || name != "part.ready" || id != "7" || data != "{\"a\":\n1}" {
		t.Fatalf("first: %q %q %q %v", name, id, data, err)
	}
	name, id, data, err = r.next()
	if err != nil || name != "message" || id != "" || data != "plain" {
		t.Fatalf("second: %q %q %q %v", name, id, data, err)
	}
	// An event cut off by the end of the stream is not delivered.
	if _, _, _, err := r.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestReadStreamBreak(t *testing.T) {
	in := "id: 3\nevent: part.ready\ndata: {\"seq\":3,\"type\":\"part.ready\"}\n\n"
	var ids []string
	done, err := readStream(strings.NewReader(in), func(ev StreamEvent, id string) error {
		ids = append(ids, id)
		return nil
	})
	if done || !isStreamBreak(err) || !errors.Is(err, io.ErrUnexpectedEOF) || len(ids) != 1 || ids[0] != "3" {
		t.Fatalf("done %v err %v ids %v", done, err, ids)
	}
	done, err = readStream(strings.NewReader("event: stream.end\ndata: {\"state\":\"Gone\"}\n\n"), func(StreamEvent, string) error { return nil })
	if !done || err != nil {
		t.Fatalf("end: %v %v", done, err)
	}
}
