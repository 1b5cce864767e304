package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mcpgate/mcpgate/internal/auditlog"
)

const auditUsage = `usage:
  mcpgate audit verify [--key PUB] [--continued] FILE...
  mcpgate audit keygen --out FILE

verify checks the hash chain of audit log files (oldest first: rotated
files, then the current one, e.g. audit.jsonl.* audit.jsonl) and, with
--key, every signature. It prints "ok: ..." and exits 0, or names the
first broken, edited, reordered, inserted or missing record and exits 1
(2 for usage and I/O errors).

keygen writes a new Ed25519 signing key to FILE (0600) and its public key
to FILE.pub, for audit.sign.key_file and verify --key.

See docs/operations.md §Audit verification.
`

func init() {
	commands["audit"] = command{"verify the tamper-evident audit log; create its signing key", runAudit}
}

func runAudit(_ context.Context, args []string, e *env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], e)
	case "keygen":
		return auditKeygen(args[1:], e)
	case "-h", "--help", "help":
		fmt.Fprint(e.stderr, auditUsage)
		return 0
	}
	fmt.Fprintf(e.stderr, "mcpgate audit: unknown subcommand %q: use verify or keygen\n", args[0])
	return 2
}

// verifyFlags parses flags placed before, between or after the files.
func verifyFlags(args []string, e *env) (files []string, keyFile string, continued bool, code int) {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, auditUsage); fs.PrintDefaults() }
	fs.StringVar(&keyFile, "key", "", "Ed25519 public key file (PEM); checks every signature")
	fs.BoolVar(&continued, "continued", false, "accept a first file whose chain begins after seq 1 (earlier files deleted by retention)")
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, "", false, 0
			}
			return nil, "", false, 2
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) == 0 {
		fmt.Fprintln(e.stderr, "mcpgate audit verify: name the audit files, oldest first")
		return nil, "", false, 2
	}
	return files, keyFile, continued, -1
}

func auditVerify(args []string, e *env) int {
	files, keyFile, continued, code := verifyFlags(args, e)
	if code >= 0 {
		return code
	}
	o := auditlog.VerifyOptions{Continued: continued}
	if keyFile != "" {
		k, err := auditlog.LoadPublicKey(keyFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "mcpgate audit verify: --key: %v\n", err)
			return 2
		}
		o.Key = k
	}
	res, err := auditlog.Verify(files, o)
	var be *auditlog.BreakError
	if errors.As(err, &be) {
		fmt.Fprintf(e.stderr, "FAILED: %v\n", be)
		fmt.Fprintf(e.stderr, "%d records before it verified.\n", res.Records)
		return 1
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate audit verify: %v\n", err)
		return 2
	}
	printVerified(e.stdout, res, o.Key)
	return 0
}

func printVerified(w io.Writer, res auditlog.Result, key ed25519.PublicKey) {
	fmt.Fprintf(w, "ok: %d records, chain intact, %d signatures verified\n", res.Records, res.Signatures)
	switch {
	case key == nil && res.Unchecked > 0:
		fmt.Fprintf(w, "note: %d signatures not checked: pass --key PUB to check them\n", res.Unchecked)
	case key == nil:
		fmt.Fprintln(w, "note: the log is not signed: whoever can write the file can rewrite the whole chain undetected")
	}
	if key != nil && res.UnsignedTail > 0 {
		fmt.Fprintf(w, "note: the last %d records come after the last signature: until the next checkpoint they are only as safe as the file\n", res.UnsignedTail)
	}
	if res.FirstSeq > 1 {
		fmt.Fprintf(w, "note: the chain begins at seq %d (earlier files not given)\n", res.FirstSeq)
	}
	for _, t := range res.TornLines {
		fmt.Fprintf(w, "note: torn line at %s\n", t)
	}
}

func auditKeygen(args []string, e *env) int {
	fs := flag.NewFlagSet("audit keygen", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("out", "", "private key file to create (0600); the public key goes to FILE.pub")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: mcpgate audit keygen --out FILE")
		return 2
	}
	id, err := auditlog.GenerateKey(*out)
	if err != nil {
		fmt.Fprintf(e.stderr, "mcpgate audit keygen: %v\n", err)
		return 2
	}
	fmt.Fprintf(e.stdout, "wrote %s (private, 0600) and %s.pub (public); key id %s\n", *out, *out, id)
	fmt.Fprintf(e.stdout, "set audit.sign.key_file: %s and verify with: mcpgate audit verify --key %s.pub FILE...\n", *out, *out)
	return 0
}
