package containerfiles

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/openshift/imagebuilder"
	"github.com/openshift/imagebuilder/dockerfile/parser"
)

// CheckContainerfile parses a Containerfile with the parser buildah uses and runs it through
// imagebuilder's evaluator without executing anything. A builder can call it on a Containerfile it
// received (for example from a ConfigMap) before starting a build; Assemble already did. Line
// numbers in its errors are the Containerfile's own.
func CheckContainerfile(text string) error {
	result, err := safeParse(text)
	if err != nil {
		return fmt.Errorf("parsing the Containerfile: %w", err)
	}
	if len(result.AST.Children) == 0 {
		return fmt.Errorf("the Containerfile has no instructions")
	}
	failed, err := evaluate(result.AST)
	if err == nil {
		return nil
	}
	if failed != nil {
		return fmt.Errorf("line %d: %w", failed.StartLine, err)
	}
	return err
}

// dryRunExecutor executes nothing. Unknown instructions fail, as they do in buildah.
type dryRunExecutor struct{ imagebuilder.Executor }

func (dryRunExecutor) UnrecognizedInstruction(step *imagebuilder.Step) error {
	return fmt.Errorf("unknown instruction %q", strings.ToUpper(step.Command))
}

// evaluate walks the instructions the way buildah drives imagebuilder (stages, FROM, then each
// instruction resolved and run) with an executor that does nothing. It catches what the parser
// lets through: wrong flags, wrong argument counts, bad variable syntax, a RUN before any FROM.
// failed is the instruction that failed, nil when none can be named.
func evaluate(root *parser.Node) (failed *parser.Node, err error) {
	instructions := slices.Clone(root.Children)
	if _, err := evaluateStages(instructions); err == nil {
		return nil, nil
	} else if failed, ok := err.(*stepError); ok {
		return failed.node, failed.err
	} else {
		// Stage setup (heading ARGs, stage names) reports no instruction: find the shortest prefix
		// of the instructions that fails; later instructions cannot make earlier ones fail.
		shortest := sort.Search(len(instructions)+1, func(n int) bool {
			_, prefixErr := evaluateStages(instructions[:n])
			return prefixErr != nil
		})
		if shortest >= 1 && shortest <= len(instructions) {
			return instructions[shortest-1], err
		}
		return nil, err
	}
}

type stepError struct {
	node *parser.Node
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }

func evaluateStages(instructions []*parser.Node) (stages int, err error) {
	defer func() {
		// imagebuilder is third-party code fed untrusted content; a panic in it must not take the
		// controller down.
		if recovered := recover(); recovered != nil {
			err = fmt.Errorf("the evaluator failed: %v", recovered)
		}
	}()
	root := &parser.Node{StartLine: -1, Children: slices.Clone(instructions)}
	all, err := imagebuilder.NewStages(root, imagebuilder.NewBuilder(nil))
	if err != nil {
		return 0, err
	}
	executor := dryRunExecutor{Executor: imagebuilder.NoopExecutor}
	for _, stage := range all {
		if len(stage.Node.Children) == 0 {
			continue
		}
		from := stage.Node.Children[0]
		builder := stage.Builder
		if _, err := builder.From(stage.Node); err != nil {
			return 0, &stepError{node: from, err: err}
		}
		for _, node := range stage.Node.Children {
			step := builder.Step()
			if err := step.Resolve(node); err != nil {
				return 0, &stepError{node: node, err: err}
			}
			if err := builder.Run(step, executor, false); err != nil {
				return 0, &stepError{node: node, err: err}
			}
		}
	}
	return len(all), nil
}
