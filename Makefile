# ibuild: lock blueprints, build bootable images, publish them.
GO ?= go
BIN := bin/ibuild
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
# One cache for every test that downloads packages or builds trees.
export IBUILD_TEST_CACHE ?= $(CURDIR)/.cache/test
BLUEPRINT ?= testdata/blueprints/example.toml
TYPE ?= qcow2
OUT ?= out

.PHONY: all build deps deps-example test test-short lint bench example boot check clean webui-assets

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ibuild

# The web page's scripts (htmx and its SSE extension), installed from
# pkg/webui/web/package-lock.json by npm ci and copied where go:embed takes
# them. The copies are committed, so go build needs no npm;
# pkg/webui's tests check them against the lockfile.
webui-assets:
	cd pkg/webui/web && npm ci --ignore-scripts --no-audit --no-fund && ./copy-assets && rm -rf node_modules

# Everything the tests use; example and boot install only what they need.
deps:
	./.ci/deps check

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-short:
	$(GO) test -short ./...

# go test runs two packages at a time (-p is the number of cores), in the
# order they are named, each once: the longest first, so that no long
# package starts last and leaves the other core idle at the end (./...
# alone sorts by name, and stages, among the longest, comes last).
SLOW_TESTS := ./cmd/ibuild ./pkg/disk ./stages ./pkg/crossboot ./pkg/isotest ./pkg/cloudapi ./pkg/serve ./pkg/weldr

test:
	$(GO) test -timeout 55m $(SLOW_TESTS) ./...

# What CI and the README run: install, lint, every test.
check: deps lint test

# Benchmarks, not tests: lock (warm metadata cache, against apt-get -s),
# parsing and solving, then a whole build against an mmdebstrap baseline,
# then the aarch64 cross build beside the x86_64 build of the same blueprint.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./pkg/repo ./pkg/depsolve ./pkg/lock
	./.ci/bench-build
	./.ci/bench-cross
	./.ci/bench-upload
	$(GO) test -run '^$$' -bench StatusUnderLoad -benchtime 1x ./pkg/cloudapi ./pkg/weldr

# The main job: lock the example blueprint against the host's repositories,
# then build it for this machine's architecture into $(OUT)/.
example: deps-example build
	./$(BIN) lock $(BLUEPRINT) --type $(TYPE)
	./$(BIN) build $(BLUEPRINT:.toml=.lock.json) --type $(TYPE) -o $(OUT)

deps-example:
	./.ci/deps example

# Boot the example image under QEMU (UEFI, serial console). Ctrl-a x quits.
# The virtio-rng device gives the guest entropy at once, as libvirt does.
boot:
	./.ci/deps boot
	cp /usr/share/OVMF/OVMF_VARS_4M.fd $(OUT)/OVMF_VARS_4M.fd
	qemu-system-x86_64 -m 2048 -smp 2 -nographic -device virtio-rng-pci \
	  -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
	  -drive if=pflash,format=raw,file=$(OUT)/OVMF_VARS_4M.fd \
	  -drive file=$(OUT)/disk.qcow2,if=virtio,format=qcow2 \
	  -nic user,model=virtio-net-pci

clean:
	rm -rf bin out .cache
