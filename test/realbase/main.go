// Command realbase turns a Debian root filesystem into an OCI image layout shaped like an RHCOS /
// Fedora CoreOS "chunked" image: one layer per big package, the other packages bin-packed into the
// remaining layers, the files of no package on a last layer (see hack/realistic-base.sh).
//
//	realbase -rootfs DIR -out LAYOUT [-info info.json] [-layers 52] [-packed N] [-epoch SECONDS]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	rootfs := flag.String("rootfs", "", "the root filesystem (a dpkg system)")
	out := flag.String("out", "", "the OCI image layout to write (must not exist)")
	infoPath := flag.String("info", "", "where to write the image's shape as JSON")
	layers := flag.Int("layers", 52, "layers in all (at most), the unpackaged files' one included")
	packed := flag.Int("packed", 0, "of them, how many hold the small packages bin-packed (0: a sixth)")
	epoch := flag.Int64("epoch", 0, "mtimes are clamped to this time (seconds since 1970, SOURCE_DATE_EPOCH)")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "layers written at once")
	flag.Parse()
	if *rootfs == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*rootfs, *out, *infoPath, *layers, *packed, time.Unix(*epoch, 0), *workers); err != nil {
		fmt.Fprintln(os.Stderr, "realbase:", err)
		os.Exit(1)
	}
}

func run(rootfs, out, infoPath string, layers, packed int, epoch time.Time, workers int) error {
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists", out)
	}
	if packed <= 0 {
		packed = max(1, layers/6)
	}
	start := time.Now()
	s, err := splitRootfs(rootfs, layers, packed)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "realbase: %d entries, %d layers planned in %s\n", len(s.root.entries), len(s.Layers), time.Since(start).Round(time.Millisecond))
	if len(s.root.skipped) > 0 {
		fmt.Fprintf(os.Stderr, "realbase: left out %d device nodes and sockets, e.g. %s\n", len(s.root.skipped), s.root.skipped[0])
	}
	info, err := s.WriteLayout(out, epoch, workers)
	if err != nil {
		return err
	}
	for i, l := range info.LayerInfo {
		fmt.Fprintf(os.Stderr, "  %2d  %9.1f MB  %8.1f MB gz  %6d files  %s\n", i+1, mb(l.Uncompressed), mb(l.Compressed), l.Files, l.Name)
	}
	fmt.Fprintf(os.Stderr, "realbase: %s: %d layers, %.1f MB uncompressed, %.1f MB compressed, in %s\n",
		info.Image, info.Layers, mb(info.Uncompressed), mb(info.Compressed), time.Since(start).Round(time.Second))
	if infoPath != "" {
		return writeInfo(infoPath, info)
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }
