//go:build !unix

package sechard

import "errors"

func mkfifo(path string) error { return errors.New("no FIFOs on this platform") }
