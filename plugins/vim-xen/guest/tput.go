package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// recv accepts one connection on port, counts the bytes until the sender half-closes,
// and answers "BYTES NANOSECONDS" measured from the first byte to the last.
func recv(port string) error {
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	var n int64
	var first, last time.Time
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			n += int64(k)
			last = time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(c, "%d %d\n", n, last.Sub(first).Nanoseconds())
	return err
}

// send sends zeros to addr for d, half-closes, and prints what the receiver measured:
// "bytes=B seconds=S mbps=M".
func send(addr string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the receiver's count: %w", err)
	}
	var n, ns int64
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d %d", &n, &ns); err != nil || ns <= 0 {
		return fmt.Errorf("receiver answered %q", line)
	}
	s := float64(ns) / 1e9
	fmt.Printf("bytes=%d seconds=%.3f mbps=%.2f\n", n, s, float64(n)*8/s/1e6)
	return nil
}
