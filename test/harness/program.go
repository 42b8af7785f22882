package harness

import (
	"fmt"
	"os"
)

// Program is a T for a command that runs the harness outside `go test` (the demo, `make image`):
// Fatal ends the function given to Run with that error, Cleanup's functions run, last first, at
// Teardown, and TempDir's directories go with them.
type Program struct {
	// TempPrefix starts the names of TempDir's directories, so that what an interrupted run left
	// can be told apart.
	TempPrefix string
	cleanups   []func()
}

type programFailure struct{ err error }

func (p *Program) Helper()                      {}
func (p *Program) Logf(f string, args ...any)   { fmt.Printf("  "+f+"\n", args...) }
func (p *Program) Cleanup(f func())             { p.cleanups = append(p.cleanups, f) }
func (p *Program) Fatal(args ...any)            { panic(programFailure{fmt.Errorf("%s", fmt.Sprint(args...))}) }
func (p *Program) Fatalf(f string, args ...any) { panic(programFailure{fmt.Errorf(f, args...)}) }
func (p *Program) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "  ERROR: "+f+"\n", args...) }

func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", p.TempPrefix)
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Run runs f and returns the error a Fatal or Fatalf call in it ended it with; any other panic
// goes on.
func (p *Program) Run(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			failed, ok := r.(programFailure)
			if !ok {
				panic(r)
			}
			err = failed.err
		}
	}()
	return f()
}

// Teardown runs the cleanups, last registered first, once.
func (p *Program) Teardown() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}
