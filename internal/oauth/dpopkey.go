package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// DPoPKey is a proof-of-possession key with its JWS algorithm.
type DPoPKey struct {
	Key crypto.Signer
	Alg string
}

// NewDPoPKey creates an ES256 key.
func NewDPoPKey() (*DPoPKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &DPoPKey{Key: k, Alg: "ES256"}, nil
}

// Thumbprint is the key's RFC 7638 thumbprint (dpop_jkt).
func (k *DPoPKey) Thumbprint() string {
	tp, _ := dpop.Thumbprint(k.Key.Public())
	return tp
}

// Proof makes a DPoP proof.
func (k *DPoPKey) Proof(method, htu string, opt dpop.ProofOptions) (string, error) {
	return dpop.NewProof(k.Key, k.Alg, method, htu, opt)
}

// keyFor is the DPoP key of rec: the parsed current one when rec is (or
// shares the key of) the current record, else rec's own; nil without one.
func (s *Credential) keyFor(rec *Record) *DPoPKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == rec || (s.rec != nil && s.rec.DPoPKey != nil && string(s.rec.DPoPKey) == string(rec.DPoPKey)) {
		return s.dpopKey
	}
	if len(rec.DPoPKey) == 0 {
		return nil
	}
	k, err := parseDPoPKey(rec.DPoPKey)
	if err != nil {
		return nil
	}
	return k
}

// parseDPoPKey reads a record's DPoP key (PKCS#8, ES256).
func parseDPoPKey(der []byte) (*DPoPKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("stored DPoP key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("stored DPoP key is not a signing key")
	}
	return &DPoPKey{Key: signer, Alg: "ES256"}, nil
}

// dpopKeyFor decides whether to use DPoP with this AS and returns the key
// (the stored one for the same issuer and resource, else a new one).
func (s *Credential) dpopKeyFor(d *Discovery) (*DPoPKey, []byte, error) {
	use := false
	switch s.cfg.DPoP {
	case "on":
		use = true
	case "off":
	default:
		use = slices.Contains(d.AS.DPoPSigningAlgs, "ES256") || (d.PRM != nil && d.PRM.DPoPBoundRequired)
	}
	if !use {
		return nil, nil, nil
	}
	if s.cfg.DPoP == "on" && len(d.AS.DPoPSigningAlgs) > 0 && !slices.Contains(d.AS.DPoPSigningAlgs, "ES256") {
		return nil, nil, fmt.Errorf("the authorization server's DPoP algorithms %v do not include ES256", d.AS.DPoPSigningAlgs)
	}
	s.mu.Lock()
	rec, key := s.rec, s.dpopKey
	s.mu.Unlock()
	if rec != nil && key != nil && rec.Issuer == d.AS.Issuer && rec.Resource == d.Resource {
		return key, rec.DPoPKey, nil
	}
	k, err := NewDPoPKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, nil, err
	}
	return k, der, nil
}
