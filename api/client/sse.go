package client

import (
	"bufio"
	"io"
	"strings"
)

// maxSSELine bounds one line of an event stream; an event's data is one JSON line.
const maxSSELine = 1 << 20

// sseReader reads server-sent events (the text/event-stream format of the HTML
// standard): fields up to a blank line, comments skipped.
type sseReader struct {
	sc *bufio.Scanner
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	return &sseReader{sc: sc}
}

// next returns the next event; io.EOF when the stream ends between events.
func (r *sseReader) next() (name, id, data string, err error) {
	var lines []string
	seen := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if seen {
				if name == "" {
					name = "message"
				}
				return name, id, strings.Join(lines, "\n"), nil
			}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: heartbeats
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name, seen = value, true
		case "data":
			lines, seen = append(lines, value), true
		case "id":
			id, seen = value, true
		}
	}
	if err := r.sc.Err(); err != nil {
		return "", "", "", err
	}
	return "", "", "", io.EOF
}
