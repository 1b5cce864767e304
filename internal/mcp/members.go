package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Member is one member of a JSON object: its decoded name and its value's
// original bytes.
type Member struct {
	Key string
	Raw json.RawMessage
}

// Members splits a JSON object into its members in document order, values
// kept as their original bytes, duplicates kept (the gateway's rewriters —
// list filters, cache hints, task results — change one member and leave
// every other byte alone).
func Members(b []byte) ([]Member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var out []Member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, Member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// JoinMembers is the JSON object of members, in their order.
func JoinMembers(members []Member) json.RawMessage {
	var out bytes.Buffer
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(m.Key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(m.Raw)
	}
	out.WriteByte('}')
	return out.Bytes()
}

// JoinArray is the JSON array of items, in their order.
func JoinArray(items []json.RawMessage) json.RawMessage {
	var out bytes.Buffer
	out.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(it)
	}
	out.WriteByte(']')
	return out.Bytes()
}
