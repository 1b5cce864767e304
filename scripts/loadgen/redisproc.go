package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisPlaceholder in a -variant's or -gateway-arg's arguments stands for
// the URL of a redis-server the generator starts itself (-redis-server),
// e.g. -variant 'redis=--redis-url={redis}'.
const redisPlaceholder = "{redis}"

// redisProc is a redis-server the generator started on loopback: no
// persistence, its own port, ended with the generator. Each run of a
// variant starts from an empty database and zeroed command statistics.
type redisProc struct {
	cmd *exec.Cmd
	url string
	c   *redis.Client
}

func usesRedis(args []string) bool {
	for _, a := range args {
		if strings.Contains(a, redisPlaceholder) {
			return true
		}
	}
	return false
}

// withRedis replaces the placeholder in args.
func withRedis(args []string, url string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, redisPlaceholder, url)
	}
	return out
}

func startRedis(bin, dir string) (*redisProc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", port,
		"--dir", dir, "--maxmemory-policy", "noeviction")
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the generator
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (Debian package redis-server; -redis-server names another): %w", bin, err)
	}
	p := &redisProc{cmd: cmd, url: "redis://" + addr + "/0", c: redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if p.c.Ping(context.Background()).Err() == nil {
			return p, nil
		}
	}
	p.stop()
	return nil, fmt.Errorf("redis-server on %s did not answer PING in 10 s", addr)
}

func (p *redisProc) stop() {
	p.c.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// reset empties the database and zeroes the command statistics, so that a
// run counts its own commands only.
func (p *redisProc) reset() error {
	ctx := context.Background()
	if err := p.c.FlushAll(ctx).Err(); err != nil {
		return err
	}
	return p.c.ConfigResetStat(ctx).Err()
}

// redisSample is redis-server's CPU time and its per-command call counts.
type redisSample struct {
	cpu   time.Duration
	calls map[string]int64
}

func (p *redisProc) sample() (redisSample, error) {
	cpu, err := readCPU(p.cmd.Process.Pid)
	if err != nil {
		return redisSample{}, err
	}
	info, err := p.c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return redisSample{}, err
	}
	return redisSample{cpu: cpu, calls: parseCommandStats(info)}, nil
}

// parseCommandStats reads "cmdstat_evalsha:calls=12,usec=…" lines.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// generatorCommands are the generator's own (sampling, reset): not the
// gateway's.
var generatorCommands = map[string]bool{"info": true, "config|resetstat": true, "flushall": true, "ping": true}

// scriptOnly are the commands only the gateway's Lua scripts run
// (internal/state: the DPoP replay script and the rate-limit script).
// Redis counts a script's inner commands in commandstats too, so they are
// not round trips.
var scriptOnly = map[string]bool{"exists": true, "time": true, "zcount": true, "zremrangebyscore": true,
	"zadd": true, "pttl": true, "hmget": true, "hset": true}

// roundTrips is the number of commands the gateway sent between two
// samples: every command but the scripts' inner ones and the generator's.
// Two inner commands are also sent at top level: SET (the directory, hop
// nonces, readiness) — the replay script runs exactly one SET per ZADD —
// and PEXPIRE (the directory's Touch) — the rate-limit script runs one per
// HMGET and the replay script at most one per PTTL, so the top-level count
// is a lower bound when a phase mixes Touch with DPoP. The gateway does
// not pipeline, so one command is one round trip.
func roundTrips(a, b redisSample) (total int64, byCommand map[string]int64) {
	d := map[string]int64{}
	for k, v := range b.calls {
		if n := v - a.calls[k]; n > 0 {
			d[k] = n
		}
	}
	byCommand = map[string]int64{}
	for k, n := range d {
		switch {
		case generatorCommands[k] || scriptOnly[k]:
			continue
		case k == "set":
			n -= d["zadd"]
		case k == "pexpire":
			n -= d["hmget"] + d["pttl"]
		}
		if n > 0 {
			byCommand[k] = n
			total += n
		}
	}
	return total, byCommand
}

// usedMemory is Redis's used_memory (bytes): what the gateway's keys cost
// Redis, read before and after a hold.
func (p *redisProc) usedMemory() int64 {
	info, err := p.c.Info(context.Background(), "memory").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
