package mcp

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
)

// Numbers that decide routing or security (an error code that makes a
// client open a URL, a code that selects a fallback) are compared by value,
// the way JSON.parse reads them: as IEEE 754 doubles. -32042, -32042.0,
// -3.2042e4 and -32042.00000000000001 are one number to a JavaScript
// client, so they are one number to mcpgate; decoding into a Go int would
// fail for all but the first and make a guard see "no code" where the
// client sees -32042. CanonicalID applies the same rule to ids.

// NumberValue returns the IEEE 754 double value of the JSON number raw
// (surrounding white space allowed); ok is false when raw is not a JSON
// number. A number too large for a double is ±Inf, as JSON.parse makes it.
func NumberValue(raw json.RawMessage) (f float64, ok bool) {
	raw = trimWS(raw)
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') || !json.Valid(raw) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// CodeIs reports whether the JSON value raw is the number code by value
// (is), and whether raw is a JSON number at all (readable). A guard that
// looks for code treats !readable as a message it cannot read: it fails
// closed instead of taking it for "some other code".
func CodeIs(raw json.RawMessage, code int) (is, readable bool) {
	f, ok := NumberValue(raw)
	if !ok {
		return false, false
	}
	return f == float64(code), true
}

// Int is an integer member read by value: any JSON number whose double
// value is an integer in int32 range (-32042.0 and -3.2042e4 are -32042).
// Anything else fails to decode, so a struct that holds one fails as a
// whole instead of reading as zero.
type Int int

// UnmarshalJSON implements json.Unmarshaler.
func (n *Int) UnmarshalJSON(b []byte) error {
	f, ok := NumberValue(b)
	if !ok || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return &json.UnmarshalTypeError{Value: "number " + string(trimWS(b)), Type: intType}
	}
	*n = Int(f)
	return nil
}

var intType = reflect.TypeOf(0)
