package containerfiles

import (
	"errors"
	"strings"
	"testing"
)

func TestInvalidContent(t *testing.T) {
	tests := []struct {
		name          string
		content       string
		noExtensions  bool
		wantLine      int
		wantReason    string
		wantParserErr bool
	}{
		{name: "empty", content: "", wantLine: 0, wantReason: "the content is empty"},
		{name: "blank", content: " \n\t\n", wantLine: 0, wantReason: "the content is empty"},
		{name: "comments only", content: "# nothing\n\n# here\n", wantLine: 0, wantReason: "no instructions"},
		{name: "unknown instruction", content: "RUN true\n\nFORM configs\n", wantLine: 3, wantReason: `unknown instruction "FORM"`},
		{name: "unknown instruction after a continuation", content: "RUN a \\\n  b\nCOPYY x y\n", wantLine: 3, wantReason: `unknown instruction "COPYY"`},
		{name: "parse error on a later line", content: "# c\nRUN true\nENV\n", wantLine: 3, wantReason: "ENV requires at least one argument", wantParserErr: true},
		{name: "parse error inside a continuation", content: "RUN true\nENV A=1 \\\n    # comment\n    B\n", wantLine: 2, wantReason: `can't find = in "B"`, wantParserErr: true},
		{name: "parse error after a heredoc", content: "RUN <<EOF\nENV\nEOF\nLABEL\n", wantLine: 4, wantReason: "LABEL requires at least one argument", wantParserErr: true},
		{name: "unterminated heredoc", content: "RUN true\nCOPY <<EOF /etc/x\nhello\n", wantLine: 2, wantReason: "EOF: unterminated heredoc", wantParserErr: true},
		{name: "second heredoc unterminated", content: "RUN <<ONE cat - <<TWO\n1\nONE\n2\n", wantLine: 1, wantReason: "TWO: unterminated heredoc", wantParserErr: true},
		{name: "continuation at the end", content: "RUN true\nRUN echo \\", wantLine: 2, wantReason: "line continuation"},
		{name: "continuation then comments at the end", content: "RUN echo \\\n  hello \\\n# trailing comment\n\n", wantLine: 2, wantReason: "line continuation"},
		{name: "escape directive", content: "# escape=`\nRUN true\n", wantLine: 1, wantReason: `"# escape=" is not supported`},
		{name: "escape directive with spaces", content: "  #  ESCAPE = \\\nRUN true\n", wantLine: 1, wantReason: `"# escape=" is not supported`},
		{name: "line too long", content: "RUN true\nRUN echo " + strings.Repeat("x", maxLineBytes) + "\n", wantLine: 2, wantReason: "longer than"},
		{name: "NUL byte", content: "RUN true\nRUN echo a\x00b\n", wantLine: 2, wantReason: "NUL byte at column 11"},
		{name: "UTF-16", content: "R\x00U\x00N\x00 \x00t\x00r\x00u\x00e\x00\n\x00", wantLine: 1, wantReason: "UTF-16"},
		{name: "FROM without image", content: "FROM\n", wantLine: 1, wantReason: "FROM needs an image"},
		{name: "reserved stage configs", content: "FROM quay.io/x/y:1 AS configs\n", wantLine: 1, wantReason: `stage name "configs" is reserved`},
		{name: "reserved stage extensions", content: "RUN true\nFROM configs as Extensions\n", wantLine: 2, wantReason: `stage name "Extensions" is reserved`},
		{name: "final stage from scratch", content: "FROM configs AS build\nRUN true\nFROM scratch\nCOPY --from=build / /\n", wantLine: 3, wantReason: "final stage starts FROM scratch"},
		{name: "COPY from the context", content: "RUN true\nCOPY ./files /etc/files\n", wantLine: 2, wantReason: `COPY copies "./files" from the build context`},
		{name: "COPY JSON from the context", content: "COPY [\"a\", \"/b\"]\n", wantLine: 1, wantReason: `COPY copies "a" from the build context`},
		{name: "ADD from the context", content: "ADD archive.tar /opt/\n", wantLine: 1, wantReason: `ADD copies "archive.tar" from the build context`},
		{name: "COPY from a stage number", content: "FROM configs AS a\nFROM configs\nCOPY --from=0 /x /x\n", wantLine: 3, wantReason: "stage number 0"},
		{name: "bind mount of the context", content: "RUN --mount=target=/src make\n", wantLine: 1, wantReason: "mounts the build context"},
		{name: "explicit bind mount of the context", content: "RUN --mount=type=bind,source=.,target=/src make\n", wantLine: 1, wantReason: "mounts the build context"},
		{name: "mount from a stage number", content: "RUN --mount=type=bind,from=1,target=/x true\n", wantLine: 1, wantReason: "stage number 1"},
		{name: "extensions without extensions image: COPY", content: "COPY --from=extensions /a /b\n", noExtensions: true, wantLine: 1, wantReason: "sets no baseOSExtensionsImagePullspec"},
		{name: "extensions without extensions image: mount", content: "RUN true\nRUN --mount=type=bind,from=extensions,target=/x ls /x\n", noExtensions: true, wantLine: 2, wantReason: "sets no baseOSExtensionsImagePullspec"},
		{name: "extensions without extensions image: FROM", content: "FROM extensions AS e\nFROM configs\n", noExtensions: true, wantLine: 1, wantReason: "sets no baseOSExtensionsImagePullspec"},
		{name: "evaluator: bad COPY flag", content: "COPY --from=extensions --bogus=1 /a /b\n", wantLine: 1, wantReason: "COPY only supports"},
		{name: "evaluator: bad variable", content: "RUN true\nENV A=${B\n", wantLine: 2, wantReason: "Missing"},
		{name: "evaluator: FROM arguments", content: "FROM configs final\n", wantLine: 1, wantReason: "FROM requires either one argument, or three"},
		{name: "evaluator: ONBUILD FROM", content: "ONBUILD FROM x\n", wantLine: 1, wantReason: "isn't allowed as an ONBUILD trigger"},
		{name: "evaluator: healthcheck", content: "RUN true\n\nHEALTHCHECK --interval=soon CMD true\n", wantLine: 3, wantReason: "invalid duration"},
		{name: "evaluator: bad heading ARG", content: "ARG A=${\nFROM configs\n", wantLine: 1, wantReason: "Missing"},
		{name: "evaluator: bad stage name", content: "FROM configs AS ${x\n", wantLine: 1, wantReason: "Missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput(entries("aarch64", tt.content))
			if !tt.noExtensions {
				in.ExtensionsImage = testExtensionsImage
			}
			_, err := Assemble(in, ARM64)
			var invalid *InvalidContainerfileError
			if !errors.As(err, &invalid) {
				t.Fatalf("error = %v, want *InvalidContainerfileError", err)
			}
			if invalid.Arch != "aarch64" || invalid.Line != tt.wantLine || !strings.Contains(invalid.Reason, tt.wantReason) {
				t.Errorf("got arch %q line %d reason %q; want arch aarch64 line %d reason containing %q",
					invalid.Arch, invalid.Line, invalid.Reason, tt.wantLine, tt.wantReason)
			}
			if !errors.Is(err, ErrInvalidContainerfile) {
				t.Errorf("error does not match ErrInvalidContainerfile")
			}
			if tt.wantParserErr && invalid.Err == nil {
				t.Errorf("the parser's error is not wrapped")
			}
			prefix := "containerFile[arch=aarch64]"
			if tt.wantLine > 0 {
				prefix += " line " + itoa(tt.wantLine) + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("message %q does not start with %q", err, prefix)
			}
			if err := Validate(in); !errors.Is(err, ErrInvalidContainerfile) {
				t.Errorf("Validate = %v, want the same refusal", err)
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestValidContent(t *testing.T) {
	valid := []string{
		"RUN echo hello > /etc/hello",
		"run echo lower-case instructions",
		"FROM configs AS final\nRUN rpm-ostree install tree && \\\n    ostree container commit\n",
		"\n\n# leading comment\nRUN true\n# trailing comment\n",
		"RUN one \\\n    # a comment inside a continuation\n\n    two\n",
		"RUN <<EOF\n#!/bin/sh\necho \\\nEOF\n",
		"RUN <<-EOF\n\techo tabbed\n\tEOF\n",
		"COPY <<EOF /etc/motd\nwelcome\nEOF\n",
		"COPY --from=extensions /usr/share/x /usr/share/x",
		"COPY --from=quay.io/org/tools@sha256:" + strings.Repeat("3", 64) + " /bin/tool /usr/bin/tool",
		"ADD https://example.com/file.tar.gz /opt/\n",
		"ADD git@github.com:org/repo.git /src\n",
		"RUN --mount=type=cache,target=/var/cache/dnf dnf install -y tree\n",
		"RUN --mount=type=tmpfs,target=/tmp true\n",
		"RUN --mount=type=bind,from=extensions,target=/ext ls /ext\n",
		"ARG VERSION=1\nFROM quay.io/org/helper:${VERSION} AS helper\nFROM configs\nCOPY --from=helper /x /x\n",
		"FROM quay.io/org/helper:latest AS helper\nRUN true\nFROM configs AS final\nCOPY --from=helper /x /x\n",
		"FROM scratch AS files\nCOPY <<EOF /x\ny\nEOF\nFROM configs\nCOPY --from=files /x /x\n",
		"ENV A=1 \\\n    B=2\nLABEL com.example.owner=\"platform team\"\nWORKDIR /opt\nUSER root\n",
		"RUN true\r\nRUN echo windows line endings\r\n",
		"\uFEFFRUN echo bom",
		"# syntax=docker/dockerfile:1\nRUN true\n",
		"ONBUILD RUN true\n",
		"SHELL [\"/bin/bash\", \"-c\"]\nRUN echo $0\n",
	}
	for _, content := range valid {
		in := baseInput(entries("noarch", content))
		in.ExtensionsImage = testExtensionsImage
		if _, err := Assemble(in, AMD64); err != nil {
			t.Errorf("Assemble(%q): %v", content, err)
		}
	}
}
