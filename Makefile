# mosb — see README.md. `make test` is all a newcomer needs to pass the tests; `make demo` shows it work.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

# buildah as a library needs these tags (without them: libgpgme-dev, libbtrfs-dev) and cgo (chroot isolation).
GOTAGS   := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
GOFLAGS_MOSB := -tags "$(GOTAGS)"
export CGO_ENABLED := 1
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN      := bin/mosb
GO       ?= go
# Integration tests share one machine's two cores; packages run one at a time.
TEST_TIMEOUT ?= 45m
FUZZTIME ?= 30s
# Minimising each new interesting input for the default 60 s would take most of a run: mosb's
# decoders reach so much code that the fuzzer finds new coverage every few seconds.
FUZZMINIMIZE ?= 20x

.PHONY: all build test unit integration e2e e2e-kubelet generate verify kube-assets deps fuzz bench demo demo-down clean
.PHONY: realistic-base image release

all: build

build: ## the mosb binary
	$(GO) build $(GOFLAGS_MOSB) -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/mosb

deps: ## Debian packages the tests and demo use, the arm64 busybox, qemu binfmt (idempotent)
	hack/install-deps.sh
	@hack/arm64-busybox.sh >/dev/null
	@hack/binfmt.sh || echo "WARNING: arm64 emulation unavailable here: the two-architecture build tests will be SKIPPED"

kube-assets: ## etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (+ kubectl) built from the Go module proxy, cached; last line: their directory
	@hack/kube-assets.sh kubelet

realistic-base: ## a ~1.3 GB Debian OS image in ~50 layers split by package (RHCOS's shape), as an OCI layout; root, minutes once, cached; last line: its directory
	@hack/realistic-base.sh

# make image / make release. ARCHES: the architectures of the index; IMAGE_DIR: the stripped
# binaries and the pushed digest; RELEASE: the one-file install.
IMG       ?=
ARCHES    ?= amd64 arm64
AUTHFILE  ?=
IMAGE_DIR ?= bin/image
RELEASE   ?= deploy/release/mosb.yaml

image: deps ## the mosb image for ARCHES (amd64 arm64) as one index, pushed to IMG=host/ns/mosb:tag (AUTHFILE=F its credentials; INSECURE=1 for a plain-HTTP development registry, never the default)
	@test -n "$(IMG)" || { echo "usage: make image IMG=host/ns/mosb:tag [AUTHFILE=F] [INSECURE=1] [ARCHES='amd64 arm64']" >&2; exit 2; }
	@mkdir -p $(IMAGE_DIR)
	@for a in $(ARCHES); do \
	  case $$a in amd64) cc=x86_64-linux-gnu-gcc;; arm64) cc=aarch64-linux-gnu-gcc;; \
	    *) echo "make image: no C cross-compiler known for $$a (mosb needs cgo)" >&2; exit 2;; esac; \
	  echo "==> go build mosb for linux/$$a (stripped)"; \
	  GOOS=linux GOARCH=$$a CC=$$cc $(GO) build $(GOFLAGS_MOSB) -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_DIR)/mosb-linux-$$a ./cmd/mosb; \
	done
	@echo "==> mosb build of the mosb image for $(ARCHES), pushed to $(IMG)"
	@rm -f $(IMAGE_DIR)/digest
	$(GO) run $(GOFLAGS_MOSB) ./hack/image -img '$(IMG)' $(if $(INSECURE),-insecure) $(if $(AUTHFILE),-authfile '$(AUTHFILE)') -digest-file $(IMAGE_DIR)/digest $(foreach a,$(ARCHES),-bin $(a)=$(IMAGE_DIR)/mosb-linux-$(a))

# The image goes in by digest, so the file installs exactly what was pushed.
release: image ## RELEASE=deploy/release/mosb.yaml: one file (CRDs, namespaces, RBAC, the Deployment with IMG's image by digest) for `kubectl apply -f` on a plain cluster
	@assets=$$(hack/kube-assets.sh | tail -n1); digest=$$(cat $(IMAGE_DIR)/digest); \
	dir=$(IMAGE_DIR)/release; rm -rf "$$dir"; mkdir -p "$$dir"; trap 'rm -f "$(RELEASE).tmp"' EXIT; \
	printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\nimages:\n- name: mosb\n  newName: %s\n  digest: %s\n' \
	  "$$(realpath --relative-to="$$dir" deploy/release)" "$${digest%@*}" "$${digest#*@}" >"$$dir/kustomization.yaml"; \
	{ echo "# mosb $(VERSION) for a plain Kubernetes cluster: kubectl apply -f <this file>. Written by"; \
	  echo "# make release from deploy/release; the image by digest: $$digest"; \
	  "$$assets/kubectl" kustomize "$$dir"; } >"$(RELEASE).tmp"; \
	mv "$(RELEASE).tmp" "$(RELEASE)"; echo "wrote $(RELEASE): $$(grep -c '^kind: ' $(RELEASE)) objects, image $$digest"

generate: ## deepcopy and CRD YAML from api/; OpenShift's v1 MachineOSConfig CRD from the openshift/api module
	@rm -rf bin/crd-v1alpha1
	$(GO) tool controller-gen object paths=./api/... crd output:crd:dir=$(CURDIR)/bin/crd-v1alpha1 paths=./api/...
	$(GO) run ./hack/crds -alpha bin/crd-v1alpha1 -openshift "$$($(GO) list -m -f '{{.Dir}}' github.com/openshift/api)/machineconfiguration/v1/zz_generated.crd-manifests" -out config/crd
	@install -m 0644 "$$($(GO) list -m -f '{{.Dir}}' github.com/openshift/api)/machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_machineosconfigs.crd.yaml" config/openshift/

verify: ## generated files are current, code is formatted and vetted
	@$(MAKE) --no-print-directory generate
	@git diff --exit-code -- api config/crd config/openshift || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt"; exit 1; }
	$(GO) vet $(GOFLAGS_MOSB) ./...
	@GOTAGS="$(GOTAGS)" hack/check-layers.sh

# The real-kubelet e2e runs on its own, verbosely filtered, so that where the machine cannot run a
# kubelet its SKIPPED line is printed, not swallowed by `go test`'s quiet mode.
KUBELET_PKG := ./test/kubelet
KUBELET_FILTER := grep --line-buffered -E '^(=== RUN|--- |\s+---|PASS|FAIL|ok|panic)|_test.go:|SKIPPED'

test: deps ## unit, integration and e2e tests against a real apiserver, registry and buildah, then the real-kubelet e2e
	@assets=$$(hack/kube-assets.sh kubelet | tail -n1); \
	KUBEBUILDER_ASSETS=$$assets $(GO) test $(GOFLAGS_MOSB) -p 1 -parallel 4 -timeout $(TEST_TIMEOUT) -count=1 $$($(GO) list ./... | grep -v '/test/kubelet$$')
	@$(MAKE) --no-print-directory e2e-kubelet REALBASE=cached

# REALBASE=1: the realistic-base build is made first if this machine has not made it yet (minutes,
# once); cached: that case runs only where it is made already (make test, SKIPPED loudly otherwise).
REALBASE ?= 1
e2e-kubelet: deps ## builds in real pods: kubelet + kube-scheduler + containerd/runc, mosb deployed from deploy/, busybox and the realistic OS base (SKIPPED loudly where the machine cannot)
	@assets=$$(hack/kube-assets.sh kubelet | tail -n1); \
	MOSB_REALBASE=$(REALBASE) KUBEBUILDER_ASSETS=$$assets $(GO) test $(GOFLAGS_MOSB) -timeout $(TEST_TIMEOUT) -count=1 -v $(KUBELET_PKG) 2>&1 | $(KUBELET_FILTER)

e2e: deps ## the controller end to end: real apiserver, registry with auth, buildah, pods run by the kubelet stand-in
	@assets=$$(hack/kube-assets.sh | tail -n1); \
	KUBEBUILDER_ASSETS=$$assets $(GO) test $(GOFLAGS_MOSB) -parallel 4 -timeout $(TEST_TIMEOUT) -count=1 -v ./test/e2e/ 2>&1 | grep -E '^(=== RUN|--- |\s+---|PASS|FAIL|ok|panic)|_test.go:'

unit: ## tests that need no server
	$(GO) test $(GOFLAGS_MOSB) -short ./...

fuzz: ## every fuzz target for FUZZTIME each (FUZZTIME=5m for a thorough run)
	@for t in $$(grep -rhoE '^func (Fuzz[A-Za-z0-9_]+)' --include='*_test.go' . | sed 's/func //'); do \
	  pkg=$$(dirname $$(grep -rlE "^func $$t\(" --include='*_test.go' . | head -n1)); \
	  echo "== $$t ($$pkg)"; $(GO) test $(GOFLAGS_MOSB) -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	done

bench: deps build ## mosb build vs the buildah CLI, cold vs warm, on busybox and on the realistic OS base (overlay; vfs once: MOSB_BENCH_VFS_RUNS); the controller vs mosb build, 200 MachineOSConfigs' reconciles: tables of medians (MOSB_BENCH_RUNS, default 3), about an hour
	MOSB_BENCH=1 MOSB_BIN=$(CURDIR)/$(BIN) $(GO) test $(GOFLAGS_MOSB) -count=1 -v -timeout 150m -run '^(TestBuildSpeed|TestPipelineSpeed|TestRealBaseSpeed)$$' ./test/bench

demo: deps build ## a local single-node cluster + registry, mosb deployed from deploy/local, the example MachineOSConfig built in a real pod, ending with the digest in status; KEEP=1 leaves it running to explore (make demo-down ends it)
	@assets=$$(hack/kube-assets.sh kubelet | tail -n1); \
	KUBEBUILDER_ASSETS=$$assets $(GO) run $(GOFLAGS_MOSB) ./test/demo -mosb $(BIN) $(if $(KEEP),-keep)

# '[m]osb': a pattern that does not match the shell running pkill.
demo-down: ## ends a demo left running by `make demo KEEP=1`, and removes what an interrupted one (or test) left
	@$(GO) run $(GOFLAGS_MOSB) ./test/demo -down
	@pkill -f '[m]osb-demo-' || true; pkill -f '[b]in/mosb controller' || true

clean:
	rm -rf bin
