package containerfiles

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	buildkitparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	buildkitshell "github.com/moby/buildkit/frontend/dockerfile/shell"
)

// The imagebuilder parser reports errors without a line number. To tell the user which line of
// their content is wrong, this file walks the content the way the parser does (same comment,
// continuation and heredoc rules) and hands each instruction to the parser on its own: the first
// one the parser rejects is the one the whole-content parse stopped at. The tests check that this
// walk and the parser agree on where every instruction starts and ends.

// instructionSpan is one instruction of the content: its first and last line (1-based, heredoc
// bodies included) and its text with continuations joined, as the parser sees it.
type instructionSpan struct {
	start, end int
	text       string
	// heredocs is true when the instruction has heredoc bodies after its first line(s).
	heredocs bool
	// unterminated is true when the content ends inside the instruction: a line continuation or a
	// heredoc that is never closed.
	unterminated bool
	// openHeredoc is the name of the first heredoc that is never closed.
	openHeredoc string
}

// continuationPattern is the parser's line continuation with the default escape character (mosb
// refuses content with an escape directive, see contentChecker.parse).
var continuationPattern = regexp.MustCompile(`\\[ \t]*$`)

// scannerLines splits text into lines like bufio.ScanLines, which the parser reads with: a final
// line without a newline counts, a trailing \r is dropped.
func scannerLines(text string) []string {
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, line := range lines {
		lines[i] = strings.TrimSuffix(line, "\r")
	}
	return lines
}

// withoutComment is the parser's comment rule: a line whose first byte is # is empty.
func withoutComment(line string) string {
	if strings.HasPrefix(line, "#") {
		return ""
	}
	return line
}

// isBlankOrComment is the parser's rule for lines skipped inside a continuation.
func isBlankOrComment(line string) bool {
	return withoutComment(strings.TrimLeftFunc(line, unicode.IsSpace)) == ""
}

// splitInstructions walks content (without a byte order mark) into instructions.
func splitInstructions(content string) []instructionSpan {
	lines := scannerLines(content)
	var spans []instructionSpan
	for i := 0; i < len(lines); i++ {
		first := withoutComment(strings.TrimLeftFunc(lines[i], unicode.IsSpace))
		text, continued := trimContinuation(first)
		if !continued && text == "" {
			continue
		}
		span := instructionSpan{start: i + 1}
		for continued && i+1 < len(lines) {
			i++
			next := withoutComment(lines[i])
			if isBlankOrComment(next) {
				continue
			}
			var part string
			part, continued = trimContinuation(next)
			text += part
		}
		span.text = text
		span.unterminated = continued
		if !continued {
			if terminators := heredocTerminators(text); len(terminators) > 0 {
				span.heredocs = true
				for _, terminator := range terminators {
					found := false
					for !found && i+1 < len(lines) {
						i++
						found = terminator.matches(lines[i])
					}
					if !found {
						span.unterminated = true
						span.openHeredoc = terminator.name
						break
					}
				}
			}
		}
		span.end = i + 1
		spans = append(spans, span)
	}
	return spans
}

func trimContinuation(line string) (string, bool) {
	if loc := continuationPattern.FindStringIndex(line); loc != nil {
		return line[:loc[0]], true
	}
	return line, false
}

type heredocTerminator struct {
	name  string
	chomp bool
}

func (t heredocTerminator) matches(line string) bool {
	candidate := strings.TrimRight(line, "\r\n")
	if t.chomp {
		candidate = strings.TrimLeft(candidate, "\t")
	}
	return candidate == t.name
}

// heredocTerminators returns the heredocs an instruction opens, in order. The parser only looks for
// heredocs in instructions that can hold them (RUN, COPY, ADD, also behind ONBUILD, not in JSON
// form); asking the parser about the instruction alone tells which: it then fails with an
// unterminated heredoc. The names come from the same lexer settings the parser uses.
func heredocTerminators(text string) []heredocTerminator {
	if _, err := safeParse(text); err == nil || !isUnterminatedHeredoc(err) {
		return nil
	}
	lexer := buildkitshell.NewLex('\\')
	lexer.RawQuotes = true
	lexer.RawEscapes = true
	lexer.SkipUnsetEnv = true
	words, _ := lexer.ProcessWords(text, emptyEnvironment{})
	var terminators []heredocTerminator
	for _, word := range words {
		heredoc, err := buildkitparser.ParseHeredoc(word)
		if err != nil || heredoc == nil {
			continue
		}
		terminators = append(terminators, heredocTerminator{name: heredoc.Name, chomp: heredoc.Chomp})
	}
	return terminators
}

func isUnterminatedHeredoc(err error) bool {
	return strings.HasSuffix(err.Error(), "unterminated heredoc")
}

type emptyEnvironment struct{}

func (emptyEnvironment) Get(string) (string, bool) { return "", false }
func (emptyEnvironment) Keys() []string            { return nil }

// locateParseError returns the line of the instruction the parser rejects, with the parser's
// error for it, or 0 and nil when no single instruction explains the failure.
func locateParseError(content string) (int, error) {
	for _, span := range splitInstructions(content) {
		if span.openHeredoc != "" {
			return span.start, fmt.Errorf("%s: unterminated heredoc", span.openHeredoc)
		}
		if span.heredocs {
			continue
		}
		if _, err := safeParse(span.text); err != nil {
			return span.start, err
		}
	}
	return 0, nil
}
