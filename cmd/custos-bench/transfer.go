package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// File transfers: scp and sftp moving one file up (local file → remote
// /dev/null) and down (a remote file → local /dev/null) through the
// broker (recorded) and straight to sshd, the same file both ways.

// transferArgs splits an sshPeer's ssh arguments into the options, the
// port and the user@host destination, which scp and sftp want spelled
// differently from ssh (-P for the port, host:path).
func transferArgs(p sshPeer) (opts []string, port, dest string) {
	a := p.args
	dest = a[len(a)-1]
	for i := 0; i < len(a)-1; i++ {
		if a[i] == "-p" && i+1 < len(a)-1 {
			port = a[i+1]
			i++
			continue
		}
		opts = append(opts, a[i])
	}
	return opts, port, dest
}

// transfer runs one scp or sftp transfer of n bytes and returns MB/s
// (10^6 bytes) and the broker's CPU ticks meanwhile.
func transfer(tool string, p sshPeer, local, remote string, n int64, up bool, brokerPID int) (mbps, ticks float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	opts, port, dest := transferArgs(p)
	var cmd *exec.Cmd
	switch tool {
	case "scp":
		args := append(append([]string{"-q"}, opts...), "-P", port)
		if up {
			args = append(args, local, dest+":/dev/null")
		} else {
			args = append(args, dest+":"+remote, "/dev/null")
		}
		cmd = exec.CommandContext(ctx, "scp", args...)
	case "sftp":
		batch := "put " + local + " /dev/null\n"
		if !up {
			batch = "get " + remote + " /dev/null\n"
		}
		args := append(append([]string{"-q", "-b", "-"}, opts...), "-P", port, dest)
		cmd = exec.CommandContext(ctx, "sftp", args...)
		cmd.Stdin = strings.NewReader(batch)
	default:
		return 0, 0, fmt.Errorf("bench: unknown transfer tool %q", tool)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	before := cpuTicks(brokerPID)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("bench: %s via %s: %w: %s", tool, p.name, err, firstLine(errb.String()))
	}
	return float64(n) / time.Since(start).Seconds() / 1e6, cpuTicks(brokerPID) - before, nil
}

// makeZeroFile writes n zero bytes to path (sparse files would make the
// reads free, so the bytes are written).
func makeZeroFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		left -= k
	}
	return f.Close()
}

// transfers measures scp and sftp up and down against direct sshd.
func (b *bench) transfers() error {
	bp, dp, err := b.s.sshPeers()
	if err != nil {
		return err
	}
	n := b.p.streamMiB << 20
	local := filepath.Join(b.s.tmp, "xfer.bin")
	if err := makeZeroFile(local, n); err != nil {
		return fmt.Errorf("bench: transfer file: %w", err)
	}
	defer os.Remove(local)
	// The remote file sits on the target host (loopback: the same
	// machine), written by its login through the direct path.
	remote := fmt.Sprintf("/tmp/custos-bench-xfer-%d.bin", os.Getpid())
	if _, _, err := sshStreamTo(dp, fmt.Sprintf("head -c %d /dev/zero > %s", n, remote)); err != nil {
		return err
	}
	defer func() { _, _, _ = sshStreamTo(dp, "rm -f "+remote) }()
	for _, tool := range []string{"scp", "sftp"} {
		for _, up := range []bool{true, false} {
			scn := fmt.Sprintf("%s %d MiB %s", tool, b.p.streamMiB, direction(up))
			if err := b.pairedStream(scn, n, func(p sshPeer, pid int) (float64, float64, error) {
				return transfer(tool, p, local, remote, n, up, pid)
			}, bp, dp); err != nil {
				return err
			}
		}
	}
	return nil
}

// sshStreamTo runs a command on the target through peer p and returns its
// output.
func sshStreamTo(p sshPeer, remote string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(append([]string{}, p.args...), remote)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("bench: ssh via %s: %w: %s", p.name, err, firstLine(errb.String()))
	}
	return out.String(), errb.String(), nil
}
