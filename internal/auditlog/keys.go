package auditlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// signer signs records with an Ed25519 key read from a file.
type signer struct {
	key ed25519.PrivateKey
	id  string // KeyID of the public half
}

// appendSig appends `,"key":"<id>","sig":"<sig over dst so far+key>"`.
func (s *signer) appendSig(dst []byte) []byte {
	dst = append(dst, `,"key":"`...)
	dst = append(dst, s.id...)
	dst = append(dst, '"')
	sig := ed25519.Sign(s.key, dst)
	dst = append(dst, sigMarker...)
	dst = base64.StdEncoding.AppendEncode(dst, sig)
	return append(dst, '"')
}

// KeyID names a public key in records: the first 8 bytes of SHA-256 of
// its 32 raw bytes, in hex.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:keyIDHex/2])
}

// LoadPrivateKey reads an Ed25519 private key (PEM "PRIVATE KEY", PKCS #8,
// as written by GenerateKey or `openssl genpkey -algorithm ed25519`). On
// unix the file must not be readable by group or others: a signing key
// anyone on the host can read signs forgeries.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\": create one with 'mcpgate audit keygen'", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return ek, nil
}

func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o lets other users read the signing key: run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

// LoadPublicKey reads an Ed25519 public key (PEM "PUBLIC KEY", PKIX).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		if blk != nil && blk.Type == "PRIVATE KEY" {
			return nil, fmt.Errorf("%s is the private key: pass the public key file (%s.pub)", path, path)
		}
		return nil, fmt.Errorf("%s: not a PEM \"PUBLIC KEY\"", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return ek, nil
}

// GenerateKey writes a new Ed25519 key pair: the private key to path
// (0600, refusing to overwrite) and the public key to path+".pub" (0644).
// It returns the key id.
func GenerateKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	pk, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	if err := writeNew(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o644); err != nil {
		return "", err
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		_ = os.Remove(path + ".pub")
		return "", err
	}
	return KeyID(pub), nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: choose another path or remove it first", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
