package containerfiles

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/openshift/imagebuilder/dockerfile/parser"
)

func FuzzAssemble(f *testing.F) {
	seeds := []string{
		"RUN echo hello > /etc/hello",
		"FROM configs AS final\nRUN true\n",
		"ARG V=1\nFROM quay.io/x:${V} AS h\nFROM configs\nCOPY --from=h /a /a\n",
		"RUN <<EOF\necho x\nEOF\n",
		"RUN <<-A cat - <<B\n\tx\n\tA\ny\nB\n",
		"RUN a \\\n# c\n  b\n",
		"RUN echo \\",
		"ENV A=1 \\\n B",
		"FORM x",
		"# escape=`\nRUN x `\n y",
		"COPY --from=extensions /a /b",
		"RUN --mount=type=bind,from=extensions,target=/x ls",
		"ONBUILD RUN true",
		"HEALTHCHECK --interval=5s CMD true",
		"LABEL a=\"b c\" d=${e:-f}",
		"\uFEFFRUN x\r\n",
		"\\\n\\\nRUN x",
		"",
	}
	for _, tc := range goldenCases() {
		for _, entry := range tc.in.Entries {
			seeds = append(seeds, entry.Content)
		}
	}
	for i, seed := range seeds {
		f.Add(seed, validArchNames[i%len(validArchNames)])
	}
	f.Add("RUN true", "mips")
	f.Add("RUN true", "")

	f.Fuzz(func(t *testing.T, content, arch string) {
		in := baseInput(entries(arch, content))
		if len(content)%2 == 0 {
			in.ExtensionsImage = testExtensionsImage
		}
		buildArch := AMD64
		if normalized, err := NormalizeArch(arch); err == nil && normalized.IsBuildArch() {
			buildArch = normalized
		}

		first, firstErr := Assemble(in, buildArch)
		second, secondErr := Assemble(in, buildArch)
		if (firstErr == nil) != (secondErr == nil) || (firstErr != nil && firstErr.Error() != secondErr.Error()) {
			t.Fatalf("two calls disagree: %v / %v", firstErr, secondErr)
		}
		if firstErr != nil {
			if !errors.Is(firstErr, ErrInvalidContainerfile) {
				t.Fatalf("an error not caused by the content: %v", firstErr)
			}
			var invalid *InvalidContainerfileError
			if errors.As(firstErr, &invalid) && (invalid.Line < 0 || invalid.Line > len(scannerLines(content))) {
				t.Fatalf("line %d outside the content's %d lines: %v", invalid.Line, len(scannerLines(content)), firstErr)
			}
		} else {
			if first.Text != second.Text {
				t.Fatal("two calls give different Containerfiles")
			}
			if err := CheckContainerfile(first.Text); err != nil {
				t.Fatalf("the assembled Containerfile does not check: %v\n%s", err, first.Text)
			}
			if !strings.Contains(first.Text, strings.TrimPrefix(content, "\uFEFF")) {
				t.Fatal("the content is not in the Containerfile verbatim")
			}
		}
		checkSplitterAgreesWithParser(t, content)
	})
}

// checkSplitterAgreesWithParser holds the line walk of locate.go to the parser: the same instruction
// boundaries when the parser succeeds, the same error on the reported line when it fails.
func checkSplitterAgreesWithParser(t *testing.T, content string) {
	text := strings.TrimPrefix(content, "\uFEFF")
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	lines := scannerLines(text)
	if escapeDirectivePattern.MatchString(strings.ToLower(strings.TrimLeftFunc(lines[0], unicode.IsSpace))) {
		return // refused before parsing; the walk assumes the default escape character
	}
	for _, line := range lines {
		if len(line) > maxLineBytes {
			return
		}
	}
	result, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		line, cause := locateParseError(text)
		if line < 1 || cause == nil || cause.Error() != err.Error() {
			t.Fatalf("parser error %q, located on line %d as %v", err, line, cause)
		}
		return
	}
	spans := splitInstructions(text)
	nodes := result.AST.Children
	if len(spans) != len(nodes) {
		t.Fatalf("%d instructions walked, the parser has %d", len(spans), len(nodes))
	}
	for i, node := range nodes {
		if spans[i].start != node.StartLine || spans[i].end != node.EndLine {
			t.Fatalf("instruction %d: walked lines %d-%d, the parser says %d-%d", i+1, spans[i].start, spans[i].end, node.StartLine, node.EndLine)
		}
	}
}

func TestSplitInstructions(t *testing.T) {
	text := strings.Join([]string{
		"# comment",               // 1
		"",                        // 2
		"RUN a \\",                // 3
		"  # inside",              // 4
		"",                        // 5
		"  b",                     // 6
		"COPY <<ONE <<-TWO /dst/", // 7
		"one",                     // 8
		"ONE",                     // 9
		"\ttwo",                   // 10
		"\tTWO",                   // 11
		"  run c",                 // 12
		"ENV X=1 \\",              // 13
	}, "\n") + "\n"
	want := []instructionSpan{
		{start: 3, end: 6, text: "RUN a   b"},
		{start: 7, end: 11, text: "COPY <<ONE <<-TWO /dst/", heredocs: true},
		{start: 12, end: 12, text: "run c"},
		{start: 13, end: 13, text: "ENV X=1 ", unterminated: true},
	}
	got := splitInstructions(text)
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("instruction %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
	checkSplitterAgreesWithParser(t, text)
	checkSplitterAgreesWithParser(t, "RUN <<A\nx\n")
	checkSplitterAgreesWithParser(t, "RUN true\nENV A=1 \\\n B\n")
}
