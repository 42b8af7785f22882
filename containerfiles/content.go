package containerfiles

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/openshift/imagebuilder/dockerfile/command"
	"github.com/openshift/imagebuilder/dockerfile/parser"
)

// maxLineBytes is well below the 2 MiB the parser's scanner accepts, so a long line gets a clear
// error with its line number instead of the scanner's "token too long".
const maxLineBytes = 1 << 20

// escapeDirectivePattern is the parser's "# escape=" directive (matched on the lower-cased line).
var escapeDirectivePattern = regexp.MustCompile(`^#[ \t]*escape[ \t]*=[ \t]*.`)

// userContent is a containerFile entry's content that passed every check mosb makes before
// assembling it.
type userContent struct {
	// text is the content without a byte order mark and ending with a newline.
	text string
	// nodes are its instructions; their StartLine and EndLine count within text.
	nodes []*parser.Node
	// hasFrom is true when the content starts stages of its own.
	hasFrom bool
	// headingArgs are the ARG instructions before the content's first FROM.
	headingArgs []*parser.Node
}

// contentChecker checks one entry's content; entryName is its containerfileArch as written.
type contentChecker struct {
	entryName           string
	extensionsAvailable bool
}

func (c contentChecker) invalid(line int, reason string, cause error) error {
	return &InvalidContainerfileError{Arch: c.entryName, Line: line, Reason: reason, Err: cause}
}

// parse checks content and parses it with imagebuilder's parser, the one buildah uses.
func (c contentChecker) parse(content string) (*userContent, error) {
	text := strings.TrimPrefix(content, "\uFEFF")
	if strings.TrimSpace(text) == "" {
		return nil, c.invalid(0, "the content is empty", nil)
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	lines := scannerLines(text)
	for i, line := range lines {
		if len(line) > maxLineBytes {
			return nil, c.invalid(i+1, fmt.Sprintf("the line is longer than %d bytes", maxLineBytes), nil)
		}
		// No shell or parser takes a NUL byte (a binary file pasted in, or a UTF-16 one): refused
		// here, before a library parses it and prints its own complaint.
		if col := strings.IndexByte(line, 0); col >= 0 {
			return nil, c.invalid(i+1, fmt.Sprintf("the line has a NUL byte at column %d: a Containerfile is UTF-8 text (was a binary or UTF-16 file pasted in?)", col+1), nil)
		}
	}
	if escapeDirectivePattern.MatchString(strings.ToLower(strings.TrimLeftFunc(lines[0], unicode.IsSpace))) {
		return nil, c.invalid(1, `the parser directive "# escape=" is not supported: mosb's own lines come first in the assembled Containerfile, `+
			`where the directive would be an ordinary comment; write the content with the default escape character \`, nil)
	}

	result, err := safeParse(text)
	if err != nil {
		line, cause := locateParseError(text)
		if cause == nil {
			cause = err
		}
		return nil, c.invalid(line, "the content cannot be parsed: "+cause.Error(), err)
	}
	nodes := result.AST.Children
	if len(nodes) == 0 {
		return nil, c.invalid(0, "the content has no instructions, only comments or blank lines", nil)
	}
	if err := c.checkEndsCleanly(text, len(nodes)); err != nil {
		return nil, err
	}

	parsed := &userContent{text: text, nodes: nodes}
	lastFrom := -1
	for i, node := range nodes {
		if node.Value == command.From {
			lastFrom = i
		}
	}
	for i, node := range nodes {
		if err := c.checkInstruction(node, i == lastFrom); err != nil {
			return nil, err
		}
		switch {
		case node.Value == command.From:
			parsed.hasFrom = true
		case node.Value == command.Arg && !parsed.hasFrom:
			parsed.headingArgs = append(parsed.headingArgs, node)
		}
	}
	return parsed, nil
}

// sentinelInstruction follows the content in checkEndsCleanly; any instruction would do.
const sentinelInstruction = "LABEL mosb.end-of-content=true\n"

// checkEndsCleanly makes sure the content's last instruction ends within it. A line continuation on
// the last line parses fine on its own, but in the assembled Containerfile it would join mosb's
// next line to the user's instruction. The parser decides: with one more instruction after the
// content it must see exactly one more instruction.
func (c contentChecker) checkEndsCleanly(text string, instructions int) error {
	result, err := safeParse(text + sentinelInstruction)
	if err == nil && len(result.AST.Children) == instructions+1 {
		return nil
	}
	lines := scannerLines(text)
	line := len(lines)
	for line > 1 && isBlankOrComment(lines[line-1]) {
		line--
	}
	return c.invalid(line, `the last instruction ends with a line continuation (\) but no line follows it: `+
		`remove the trailing \ (mosb appends its own steps after the content, and they would be joined to this instruction)`, err)
}

func (c contentChecker) checkInstruction(node *parser.Node, isLastFrom bool) error {
	line := node.StartLine
	if _, known := command.Commands[node.Value]; !known {
		return c.invalid(line, fmt.Sprintf("unknown instruction %q: valid are %s", strings.ToUpper(node.Value), knownInstructions()), nil)
	}
	switch node.Value {
	case command.From:
		return c.checkFrom(node, isLastFrom)
	case command.Copy, command.Add:
		return c.checkCopySources(node)
	case command.Run:
		return c.checkRunMounts(node)
	}
	return nil
}

func knownInstructions() string {
	names := make([]string, 0, len(command.Commands))
	for name := range command.Commands {
		names = append(names, strings.ToUpper(name))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// nodeArgs returns an instruction's arguments as the parser split them (flags excluded).
func nodeArgs(node *parser.Node) []string {
	var args []string
	for next := node.Next; next != nil; next = next.Next {
		args = append(args, next.Value)
	}
	return args
}

func isReservedStageName(name string) bool {
	return strings.EqualFold(name, StageConfigs) || strings.EqualFold(name, StageExtensions)
}

func isStageNumber(name string) bool {
	return name != "" && strings.Trim(name, "0123456789") == ""
}

// checkStageReference checks a --from= or from= value: stage numbers are refused because mosb's
// stages come before the user's and shift them; the extensions stage exists only with an
// extensions image.
func (c contentChecker) checkStageReference(line int, what, stage string) error {
	if strings.Contains(stage, "$") {
		return nil
	}
	if isStageNumber(stage) {
		return c.invalid(line, fmt.Sprintf("%s refers to stage number %s: mosb adds its own stages before the content, "+
			"so stage numbers shift; name the stage (FROM … AS <name>) and refer to the name", what, stage), nil)
	}
	if strings.EqualFold(stage, StageExtensions) && !c.extensionsAvailable {
		return c.invalid(line, fmt.Sprintf("%s uses the %q stage, but the MachineOSConfig sets no baseOSExtensionsImagePullspec", what, StageExtensions), nil)
	}
	return nil
}

func (c contentChecker) checkFrom(node *parser.Node, isLast bool) error {
	args := nodeArgs(node)
	if len(args) == 0 || args[0] == "" {
		return c.invalid(node.StartLine, "FROM needs an image or a stage name", nil)
	}
	if len(args) >= 3 && strings.EqualFold(args[1], "as") && isReservedStageName(args[2]) {
		return c.invalid(node.StartLine, fmt.Sprintf("the stage name %q is reserved: mosb names its own stages %q and %q; choose another name",
			args[2], StageConfigs, StageExtensions), nil)
	}
	if err := c.checkStageReference(node.StartLine, "FROM", args[0]); err != nil {
		return err
	}
	if isLast && strings.EqualFold(args[0], "scratch") {
		return c.invalid(node.StartLine, "the final stage starts FROM scratch: the image must be an OS image "+
			"(for example FROM "+StageConfigs+"), and mosb's closing steps need its /bin/sh", nil)
	}
	return nil
}

// checkCopySources refuses COPY and ADD from the build context: mosb's build context holds only
// mosb's own files, so such a copy would fail in the middle of the build.
func (c contentChecker) checkCopySources(node *parser.Node) error {
	instruction := strings.ToUpper(node.Value)
	fromStage := ""
	for _, flag := range node.Flags {
		if value, ok := strings.CutPrefix(flag, "--from="); ok {
			fromStage = value
		}
	}
	if fromStage != "" {
		return c.checkStageReference(node.StartLine, instruction+" --from", fromStage)
	}
	args := nodeArgs(node)
	if len(args) < 2 {
		return nil // the evaluator reports the missing arguments
	}
	for _, source := range args[:len(args)-1] {
		switch {
		case strings.HasPrefix(source, "<<"):
		case node.Value == command.Add && (strings.Contains(source, "://") || strings.HasPrefix(source, "git@")):
		case strings.Contains(source, "$") && node.Value == command.Add:
		default:
			return c.invalid(node.StartLine, fmt.Sprintf("%s copies %q from the build context, which holds only mosb's own files: "+
				"use %s --from=<stage or image>, a heredoc (%s <<EOF /path), or ADD <url>", instruction, source, instruction, instruction), nil)
		}
	}
	return nil
}

// checkRunMounts checks RUN --mount: a bind mount without from= mounts the build context (see
// checkCopySources), and from= follows the stage reference rules.
func (c contentChecker) checkRunMounts(node *parser.Node) error {
	for _, flag := range node.Flags {
		options, ok := strings.CutPrefix(flag, "--mount=")
		if !ok || strings.Contains(options, "$") {
			continue
		}
		mountType, fromStage, _ := parseMount(options)
		if fromStage != "" {
			if err := c.checkStageReference(node.StartLine, "RUN --mount", fromStage); err != nil {
				return err
			}
			continue
		}
		if mountType == "bind" {
			return c.invalid(node.StartLine, "RUN --mount=type=bind without from= mounts the build context, which holds only mosb's own files: "+
				"add from=<stage or image> (for example from="+StageExtensions+")", nil)
		}
	}
	return nil
}

// parseMount reads the options of a RUN --mount flag (what follows "--mount="): its type (bind
// when not given) and its from= value. unknownKeys are option keys that hold a variable ($X):
// such an option may stand for any options, from= included.
func parseMount(options string) (mountType, from string, unknownKeys []string) {
	mountType = "bind"
	for _, option := range strings.Split(options, ",") {
		key, value, _ := strings.Cut(option, "=")
		switch key = strings.ToLower(strings.TrimSpace(key)); key {
		case "type":
			mountType = strings.ToLower(strings.TrimSpace(value))
		case "from":
			from = strings.TrimSpace(value)
		default:
			if strings.Contains(key, "$") {
				unknownKeys = append(unknownKeys, key)
			}
		}
	}
	return mountType, from, unknownKeys
}

// safeParse runs the parser on untrusted text; a panic in it must not take the controller down.
func safeParse(text string) (result *parser.Result, err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			result, err = nil, fmt.Errorf("the parser failed: %v", recovered)
		}
	}()
	return parser.Parse(strings.NewReader(text))
}
