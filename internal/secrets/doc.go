// Package secrets reads sechard's secrets (API keys, signing keys, Redis
// passwords) from where deployments put them, and holds them in a type that
// never prints its value.
//
// Guarantees:
//
//   - [Resolve] looks each name up, in order, in the environment variable
//     NAME, in the file named by NAME_FILE, then in the file NAME in the
//     first of the secret directories that has one (by default
//     $CREDENTIALS_DIRECTORY, when systemd sets it, then /run/secrets).
//     Setting both NAME and NAME_FILE is an error. Trailing whitespace is
//     trimmed, and an empty or whitespace-only value counts as missing.
//   - Every problem is reported at once, in one error: first
//     "missing required secret: A, B" for the missing names (sorted), then
//     each other problem. Errors and log lines name variables, files and
//     modes, never a value or a digest of it.
//   - Only names that [CheckName] accepts are resolved: letters, digits and
//     _, not starting with a digit, so a name can never leave a secret
//     directory. Only regular files are read, through their path (so a
//     Kubernetes ..data symlink swap is seen at the next load), and at most
//     [MaxSize] bytes of them: a directory, a FIFO (whose open would block),
//     a device, a dangling symlink and a larger file are errors.
//   - Each call logs one info line per secret found (name, source, path,
//     whether its value changed since the last call that succeeded) and a
//     warning for a file readable by other users. The change is noticed
//     through a keyed digest held for the life of the process under a random
//     per-process key; the values themselves are not kept.
//   - A [Secret] prints "[REDACTED]" through every fmt verb, JSON, text
//     marshalling and zap; only [Secret.Value] returns the value.
//
// Resolve is safe for concurrent use; it reads files and the environment, so
// it belongs at config load, never on a request path.
package secrets
