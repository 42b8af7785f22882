package harness

// T is what the harness needs of its caller: *testing.T and *testing.B satisfy it, and so can a
// program such as the demo, which runs the same components outside `go test`.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}
