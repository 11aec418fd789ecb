package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a running MinIO server on loopback. Endpoint is host:port
// without a scheme (plain HTTP), as minio-go and S3 clients take it.
type MinIO struct {
	Endpoint  string
	AccessKey string
	SecretKey string
}

// URL is the endpoint with its scheme.
func (m *MinIO) URL() string { return "http://" + m.Endpoint }

// Client returns a minio-go client for the server.
func (m *MinIO) Client() (*minio.Client, error) {
	return minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Secure: false,
		Region: "us-east-1",
	})
}

var sharedMinIO struct {
	once  sync.Once
	minio *MinIO
	err   error
	miss  string
}

// StartMinIO returns the test binary's MinIO server, starting it on first use.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	sharedMinIO.once.Do(func() {
		bin, err := ToolPath("minio")
		if err != nil {
			sharedMinIO.miss = "minio not found; " + InstallHint
			return
		}
		dir, err := workDir("minio")
		if err != nil {
			sharedMinIO.err = err
			return
		}
		port, err := freePort()
		if err != nil {
			sharedMinIO.err = err
			return
		}
		sharedMinIO.minio, _, sharedMinIO.err = launchMinIO(minioOptions{
			bin: bin, dir: dir, port: port,
			accessKey: "custos" + randomToken(4), secretKey: randomToken(16),
		})
	})
	if sharedMinIO.miss != "" {
		unavailable(tb, sharedMinIO.miss)
	}
	if sharedMinIO.err != nil {
		tb.Fatalf("devstack: minio: %v", sharedMinIO.err)
	}
	return sharedMinIO.minio
}

// NewLockedBucket creates a fresh bucket with Object Lock enabled and
// returns its name.
func (m *MinIO) NewLockedBucket(tb testing.TB) string {
	tb.Helper()
	name := "custos-test-" + randomToken(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.makeLockedBucket(ctx, name); err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	return name
}

// makeLockedBucket creates bucket with Object Lock unless it exists; an
// existing bucket without Object Lock is an error (it cannot be added later).
func (m *MinIO) makeLockedBucket(ctx context.Context, bucket string) error {
	c, err := m.Client()
	if err != nil {
		return fmt.Errorf("minio: bucket %s: %w", bucket, err)
	}
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("minio: bucket %s: %w", bucket, err)
	}
	if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: "us-east-1", ObjectLocking: true}); err != nil {
			return fmt.Errorf("minio: make bucket %s: %w", bucket, err)
		}
	}
	enabled, _, _, _, err := c.GetObjectLockConfig(ctx, bucket)
	if err != nil {
		return fmt.Errorf("minio: bucket %s: object lock: %w", bucket, err)
	}
	if enabled != "Enabled" {
		return fmt.Errorf("minio: bucket %s exists without Object Lock; delete it (object lock can only be enabled at creation)", bucket)
	}
	return nil
}

type minioOptions struct {
	bin                  string
	dir                  string
	port                 int
	accessKey, secretKey string
	detached             bool
	logPath              string
}

// launchMinIO starts a single-drive server with data in dir/data.
func launchMinIO(o minioOptions) (*MinIO, *process, error) {
	if err := os.MkdirAll(filepath.Join(o.dir, "data"), 0o755); err != nil {
		return nil, nil, fmt.Errorf("minio: %w", err)
	}
	if o.logPath == "" {
		o.logPath = filepath.Join(o.dir, "minio.log")
	}
	addr := "127.0.0.1:" + strconv.Itoa(o.port)
	p, err := startProcess(processSpec{
		Name: "minio",
		Path: o.bin,
		Args: []string{"server", "--quiet", "--address", addr, filepath.Join(o.dir, "data")},
		Env: []string{
			"MINIO_ROOT_USER=" + o.accessKey,
			"MINIO_ROOT_PASSWORD=" + o.secretKey,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_CI_CD=on",
			"HOME=" + o.dir,
		},
		Dir:      o.dir,
		LogPath:  o.logPath,
		Detached: o.detached,
	})
	if err != nil {
		return nil, nil, err
	}
	m := &MinIO{Endpoint: addr, AccessKey: o.accessKey, SecretKey: o.secretKey}
	client := &http.Client{Timeout: 2 * time.Second}
	err = waitFor(p, 60*time.Second, func() error {
		resp, err := client.Get(m.URL() + "/minio/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err != nil {
		if !o.detached {
			p.stop(5 * time.Second)
			unregister(p)
		}
		return nil, nil, fmt.Errorf("minio: %w", err)
	}
	return m, p, nil
}
