package oauth

import "errors"

// LoginRequired reports whether err means that no usable credential
// exists and a person must log in (ErrLoginRequired). It makes Credential an
// mcpclient.LoginDetector: the client engine cannot import this package,
// so its AuthTransport asks, and marks such an error so that it matches
// mcpclient.ErrLoginRequired (for the bridge and the broker) as well as
// ErrLoginRequired.
func (s *Credential) LoginRequired(err error) bool {
	return errors.Is(err, ErrLoginRequired)
}
