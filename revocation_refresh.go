package sechard

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/redisconn"
	"github.com/sechard/sechard/internal/revocation"
)

// loop checks the file every Refresh and polls Redis every CacheTTL until
// the config is unloaded.
func (rv *Revocation) loop(ctx context.Context) {
	defer close(rv.done)
	var fileTick, redisTick <-chan time.Time
	if rv.File != "" {
		t := time.NewTicker(time.Duration(rv.Refresh))
		defer t.Stop()
		fileTick = t.C
	}
	if rv.client != nil {
		t := time.NewTicker(time.Duration(rv.CacheTTL))
		defer t.Stop()
		redisTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-fileTick:
			rv.checkFile()
		case <-redisTick:
			rv.pollRedis(ctx)
		}
	}
}

// checkFile re-reads the file when it changed. A vanished or unreadable file
// keeps the last good list; that is logged once, and once when it recovers.
func (rv *Revocation) checkFile() {
	fi, err := os.Stat(rv.File)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if err == nil && rv.fileStat != nil && !rv.fileFailed && os.SameFile(fi, rv.fileStat) &&
		fi.ModTime().Equal(rv.fileStat.ModTime()) && fi.Size() == rv.fileStat.Size() {
		return // unchanged
	}
	var list []revocation.Entry
	if err == nil {
		list, fi, err = rv.readFile()
	}
	if err != nil {
		if !rv.fileFailed {
			rv.fileFailed = true
			rv.logger.Error("revocation file unreadable; the last good list keeps applying",
				zap.String("file", rv.File), zap.Error(err), zap.Int("entries", len(rv.fileList)))
		}
		return
	}
	if rv.fileFailed {
		rv.logger.Info("revocation file readable again", zap.String("file", rv.File))
	}
	rv.fileFailed = false
	rv.fileList, rv.fileStat = list, fi
	rv.logger.Info("revocation file loaded", zap.String("file", rv.File), zap.Int("entries", len(list)))
	rv.rebuildLocked()
}

// readFile reads and parses the revocation file. Malformed lines are logged
// and skipped; the rest applies.
func (rv *Revocation) readFile() ([]revocation.Entry, os.FileInfo, error) {
	f, err := os.Open(rv.File)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory", rv.File)
	}
	list, bad, err := revocation.ParseFile(f)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bad {
		rv.logger.Warn("ignoring malformed revocation line", zap.String("file", rv.File),
			zap.Int("line", b.Line), zap.String("problem", b.Problem))
	}
	return list, fi, nil
}

// pollRedis reads the fleet's revocations from Redis. When Redis is
// unreachable, the last known list keeps applying; the outage is logged
// once, and once when Redis is back.
func (rv *Revocation) pollRedis(parent context.Context) {
	rv.pollMu.Lock()
	defer rv.pollMu.Unlock()
	timeout := min(time.Duration(rv.CacheTTL), time.Second)
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	list, err := revocation.ReadRedis(ctx, rv.client, rv.now(), rv.bounds, rv.legacy)
	if parent.Err() != nil {
		return // unloading: not an outage
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if err != nil {
		redisconn.Failed(rv.client)
		if !rv.redisDown {
			rv.redisDown = true
			rv.logger.Error("revocation redis unreachable; the last known list keeps applying",
				zap.String("redis", redisconn.RedactURL(rv.Redis)), zap.String("topology", rv.RedisTopology),
				zap.Error(err), zap.Int("entries", len(rv.redisList)))
		}
		return
	}
	if rv.redisDown {
		rv.redisDown = false
		rv.logger.Info("revocation redis reachable again", zap.String("redis", redisconn.RedactURL(rv.Redis)))
	}
	rv.redisList = list
	lastRedisLists.Store(rv.redisID(), list)
	rv.rebuildLocked()
}

// lastRedisLists remembers, per Redis URL, the last list read, across
// reloads of the config.
var lastRedisLists sync.Map

// rebuildLocked merges every source into a new snapshot and swaps it in.
// rv.mu must be held.
func (rv *Revocation) rebuildLocked() {
	var local []revocation.Entry
	if rv.client == nil {
		local = localRevocations.List()
	}
	rv.snap.Store(revocation.NewSet(rv.now().Unix(), rv.fileList, rv.redisList, local))
}

// refreshNow re-reads Redis (or the in-memory list) at once, so a
// revocation posted to this node's admin API applies here without waiting.
func (rv *Revocation) refreshNow(ctx context.Context) {
	if rv.client != nil {
		rv.pollRedis(ctx)
		return
	}
	rv.mu.Lock()
	rv.rebuildLocked()
	rv.mu.Unlock()
}
