package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"
)

// Store persists credentials; internal/vault implements it. Get returns
// (nil, nil) for a missing key. Lock takes a lock shared by every process
// of the user (for refresh and login single-flight).
type Store interface {
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
	Delete(key string) error
	List(prefix string) ([]string, error)
	Lock(ctx context.Context, name string) (unlock func(), err error)
}

// Record is what is stored per (profile, issuer, client, resource).
type Record struct {
	Version   int            `json:"version"`
	Profile   string         `json:"profile"`
	Server    string         `json:"server"`
	Resource  string         `json:"resource"`
	Issuer    string         `json:"issuer"`
	Client    Client         `json:"client"`
	ClientKey []byte         `json:"client_key,omitempty"` // PKCS#8, DCR private_key_jwt
	DPoPKey   []byte         `json:"dpop_key,omitempty"`   // PKCS#8 ES256
	Token     Token          `json:"token"`
	AS        ServerMetadata `json:"as"`
	Subject   string         `json:"subject,omitempty"`
	Grant     string         `json:"grant,omitempty"` // authorization_code, client_credentials, device (the grant* constants)
	UpdatedAt time.Time      `json:"updated_at"`
}

// TokenKey is the store key of a record.
func TokenKey(profile, issuer, clientID, resource string) string {
	return "token|" + profile + "|" + issuer + "|" + clientID + "|" + resource
}

// ServerKey is the store key of the pointer from a server URL to its record.
func ServerKey(profile, server string) string {
	c, err := CanonicalResource(server)
	if err != nil {
		c = server
	}
	return "server|" + profile + "|" + c
}

// ClientKeyOf is the store key of a registration (per issuer: never used
// with another authorization server).
func ClientKeyOf(profile, issuer string) string { return "client|" + profile + "|" + issuer }

func (s *Credential) loadStored() (*Record, error) {
	ptr, err := s.store.Get(ServerKey(s.cfg.Profile, s.cfg.ServerURL))
	if err != nil || ptr == nil {
		return nil, err
	}
	raw, err := s.store.Get(string(ptr))
	if err != nil || raw == nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("stored credential for %s is unreadable (%v); run mcpgate logout %s and log in again", s.cfg.ServerURL, err, s.cfg.ServerURL)
	}
	return &rec, nil
}

func (s *Credential) save(rec *Record) error {
	rec.Version = 1
	rec.UpdatedAt = s.e.Now()
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := TokenKey(rec.Profile, rec.Issuer, rec.Client.ID, rec.Resource)
	if err := s.store.Put(key, raw); err != nil {
		return fmt.Errorf("storing the credential: %w", err)
	}
	return s.store.Put(ServerKey(rec.Profile, rec.Server), []byte(key))
}

// storedClient is the stored form of a client registration (under
// ClientKeyOf): the client and, for private_key_jwt with a generated
// key, that key as PKCS#8.
type storedClient struct {
	Client
	Key []byte `json:"key,omitempty"`
}

// parseClientKey reads a stored PKCS#8 client key; ok is false when der
// does not parse (the key is then left as it was), and a key that parses
// but cannot sign gives (nil, true), as the stored forms always did.
func parseClientKey(der []byte) (key crypto.Signer, ok bool) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, false
	}
	key, _ = k.(crypto.Signer)
	return key, true
}

// ClientKeyDER is the PKCS#8 form of a generated private_key_jwt key.
func (c *Client) ClientKeyDER() []byte {
	if c.Kind != "dcr" || c.Key == nil {
		return nil
	}
	if _, ok := c.Key.(*ecdsa.PrivateKey); !ok {
		return nil
	}
	der, _ := x509.MarshalPKCS8PrivateKey(c.Key)
	return der
}
