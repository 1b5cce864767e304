package mcp

import "io"

// ReadAll reads r to its end like io.ReadAll, but when size (an HTTP
// Content-Length) is known it reads into one buffer of that size instead of
// growing one from 512 bytes: a proxied message is read with one allocation.
// size is only a hint; a body longer or shorter than announced is read
// whole.
func ReadAll(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 || size > MaxMessageBytes {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1) // +1: the read that sees EOF needs no growth
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}
