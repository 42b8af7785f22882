#!/usr/bin/env bash
# The controller (pipeline) and the build pod's contract (builder/buildpod) must compile without
# buildah, containers/storage and cgo: the controller image needs none of them, and a controller
# that links the engine can no longer be built or tested without it. Used by `make verify`.
set -euo pipefail
cd "$(dirname "$0")/.."
tags="${GOTAGS:-containers_image_openpgp}"
fail=0
for pkg in ./pipeline ./builder/buildpod; do
	deps=$(go list -tags "$tags" -deps "$pkg")
	# The engine itself, buildah, and the storage library or its drivers (its small pkg/ helpers,
	# pulled in by containers/image's registries.conf and policy types, need no cgo).
	bad=$(grep -E '^(github\.com/mosb-dev/mosb/builder|github\.com/containers/buildah(/.*)?|go\.podman\.io/storage|go\.podman\.io/storage/drivers(/.*)?)$' <<<"$deps" || true)
	if [ -n "$bad" ]; then
		echo "$pkg depends on what only the build engine may use:"
		sed 's/^/  /' <<<"$bad"
		for b in $bad; do
			echo "  imported by: $(go list -tags "$tags" -f '{{.ImportPath}}: {{join .Imports " "}}' $(go list -tags "$tags" -deps "$pkg") | grep -E " $b( |$)" | cut -d: -f1 | tr '\n' ' ')"
		done
		fail=1
	fi
	if ! out=$(CGO_ENABLED=0 go build -tags "$tags" "$pkg" 2>&1); then
		echo "$pkg does not build without cgo:"
		sed 's/^/  /' <<<"$out"
		fail=1
	fi
done
exit $fail
