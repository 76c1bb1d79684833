package secrets

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"

	"go.uber.org/zap"
)

// history remembers, for the whole process, a keyed digest of each secret's
// value at the last load that succeeded, so each load can say whether a
// value changed (rotation) without keeping old values in memory and without
// ever logging a value or a digest of it. The key is random per process, so
// the digests are useless outside it.
var history struct {
	sync.Mutex
	key     []byte
	digests map[string][sha256.Size]byte
}

func digest(key []byte, v string) [sha256.Size]byte {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, v)
	var d [sha256.Size]byte
	copy(d[:], m.Sum(nil))
	return d
}

// audit logs one info line per resolved secret: name, source, path, and
// whether the value changed since the last successful load. Only a
// successful load (commit) becomes the baseline for the next comparison, so a
// refused reload does not hide a rotation from the next one.
func audit(logger *zap.Logger, names []string, sources map[string]found, commit bool) {
	history.Lock()
	defer history.Unlock()
	if history.key == nil {
		history.key = make([]byte, 32)
		rand.Read(history.key)
		history.digests = make(map[string][sha256.Size]byte)
	}
	for _, name := range names {
		f, ok := sources[name]
		if !ok {
			continue
		}
		d := digest(history.key, f.value)
		prev, seen := history.digests[name]
		fields := []zap.Field{zap.String("name", name), zap.String("source", f.source)}
		if f.path != "" {
			fields = append(fields, zap.String("path", f.path))
		}
		fields = append(fields, zap.Bool("changed", seen && prev != d), zap.Bool("first_load", !seen))
		logger.Info("secret loaded", fields...)
		if f.source != sourceEnv && runtime.GOOS != "windows" && f.mode&0o044 != 0 {
			logger.Warn("secret file is readable by other users; make it 0400 or 0600 (Kubernetes: defaultMode: 0400)",
				zap.String("name", name), zap.String("path", f.path), zap.String("mode", fmt.Sprintf("%#o", f.mode)))
		}
		if commit {
			history.digests[name] = d
		}
	}
}
