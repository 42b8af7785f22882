package containerfiles

import (
	"fmt"
	"strings"

	"github.com/openshift/imagebuilder/dockerfile/command"
	"github.com/openshift/imagebuilder/dockerfile/parser"
)

// ImagePulls are the images a Containerfile fetches from registries when it is built.
type ImagePulls struct {
	// Images are the image references as written (short names, missing tags and all), each once,
	// in the order they first appear.
	Images []string
	// Unresolved are the references, as written, whose value depends on a variable (ARG, ENV or
	// a build argument): only the build knows what they pull. When there are any, Images is not
	// the whole list.
	Unresolved []string
}

// Complete says whether Images is everything the build pulls.
func (p ImagePulls) Complete() bool { return len(p.Unresolved) == 0 }

// PulledImages lists the images a Containerfile pulls, read with the parser buildah uses: the
// image of every FROM that does not name an earlier stage (or scratch), of every COPY --from= and
// of every RUN --mount=…,from= that does not name an earlier stage or a stage number. ONBUILD
// instructions are not run by this build and are skipped; triggers that a pulled image carries in
// its own ONBUILD cannot be known without the image and are not listed.
func PulledImages(text string) (ImagePulls, error) {
	result, err := safeParse(text)
	if err != nil {
		return ImagePulls{}, fmt.Errorf("parsing the Containerfile: %w", err)
	}
	var pulls ImagePulls
	seen := map[string]bool{}
	var stages []string
	isStage := func(name string) bool {
		if isStageNumber(name) {
			return true
		}
		for _, s := range stages {
			if strings.EqualFold(s, name) {
				return true
			}
		}
		return false
	}
	add := func(image string) {
		switch {
		case image == "" || isStage(image):
		case strings.Contains(image, "$"):
			if !seen["$"+image] {
				seen["$"+image] = true
				pulls.Unresolved = append(pulls.Unresolved, image)
			}
		case !seen[image]:
			seen[image] = true
			pulls.Images = append(pulls.Images, image)
		}
	}
	for _, node := range result.AST.Children {
		switch node.Value {
		case command.From:
			args := nodeArgs(node)
			if len(args) == 0 {
				continue
			}
			if !strings.EqualFold(args[0], "scratch") {
				add(args[0])
			}
			if len(args) >= 3 && strings.EqualFold(args[1], "as") {
				stages = append(stages, args[2])
			}
		case command.Copy, command.Add:
			if from, ok := flagValue(node, "--from="); ok {
				add(from)
			}
		case command.Run:
			for _, flag := range node.Flags {
				options, ok := strings.CutPrefix(flag, "--mount=")
				if !ok {
					continue
				}
				_, from, unknown := parseMount(options)
				add(from)
				if len(unknown) > 0 && !seen["$"+flag] {
					seen["$"+flag] = true
					pulls.Unresolved = append(pulls.Unresolved, flag)
				}
			}
		}
	}
	return pulls, nil
}

// flagValue is the value of an instruction's flag written as prefix+value (the last one wins, as
// in the parser's flag handling).
func flagValue(node *parser.Node, prefix string) (string, bool) {
	value, found := "", false
	for _, flag := range node.Flags {
		if v, ok := strings.CutPrefix(flag, prefix); ok {
			value, found = v, true
		}
	}
	return value, found
}
