# mamori — `make help` lists the targets.
#
# Two commands matter to a new user: `make demo` and `make test`.
# `make check` is the fast loop for developers.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := $(CURDIR)/bin
GOBIN_TOOLS := $(BIN)/tools

# Generator versions are pinned: `make proto` output must not depend on
# what happens to be installed. protoc comes from Debian 12
# (protobuf-compiler 3.21.12); the Go plugins from the module proxy.
PROTOC_VERSION := 3.21.12
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# The Debian packages the full test suite needs are listed, with why, in
# installer/dev/test-deps.sh.

LDFLAGS := -X github.com/mamori-dev/mamori/internal/buildinfo.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build mamori-server, mamorictl, mamori-agent and mamori-loadgen into ./bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./server/cmd/mamori-server ./server/cmd/mamorictl ./agent/cmd/mamori-agent ./server/cmd/mamori-loadgen

# pam_mamori.so is loaded into sshd, login and gdm: hardened like a
# distribution would build it (agent/pam/pamtest.CFlags says the same and
# TestModuleHardening checks the result), with a build ID, stripped of debug
# symbols by the packaging step.
PAM_CFLAGS = -shared -fPIC -O2 -Wall -Wextra -Werror -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wl,-z,relro,-z,now -Wl,--build-id=sha1 -Wl,-z,noexecstack

# No package ships the server side (mamori-server, mamorictl): `make
# install` puts the binaries and mamorictl(1) under $(DESTDIR)$(PREFIX).
PREFIX ?= /usr/local
.PHONY: install
install: build ## install mamori-server, mamorictl and the manual page mamorictl(1) under $(DESTDIR)$(PREFIX) (default /usr/local)
	install -D -m 0755 $(BIN)/mamori-server $(DESTDIR)$(PREFIX)/bin/mamori-server
	install -D -m 0755 $(BIN)/mamorictl $(DESTDIR)$(PREFIX)/bin/mamorictl
	install -D -m 0644 server/cmd/mamorictl/mamorictl.1 $(DESTDIR)$(PREFIX)/share/man/man1/mamorictl.1
	gzip -9nf $(DESTDIR)$(PREFIX)/share/man/man1/mamorictl.1

.PHONY: pam
pam: ## build pam_mamori.so (C, no Go inside) into ./bin; needs gcc and libpam0g-dev
	@mkdir -p $(BIN)
	gcc $(PAM_CFLAGS) -o $(BIN)/pam_mamori.so agent/pam/pam_mamori.c -lpam
	strip --strip-unneeded --remove-section=.comment $(BIN)/pam_mamori.so

.PHONY: credprov
credprov: ## build mamori-cp.dll (Windows credential provider + filter, C, no Go inside) into ./bin/windows-amd64; needs gcc-mingw-w64-x86-64
	@mkdir -p $(BIN)/windows-amd64
	$(GO) run ./agent/credprov/cmd/mamori-cp-build -o $(BIN)/windows-amd64/mamori-cp.dll

.PHONY: check
check: ## fast checks: gofmt, vet (Linux and Windows), unit tests, package walls, Windows build
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	GOOS=windows $(GO) build ./...
	$(GO) test -short -count=1 ./...

.PHONY: deps
deps: ## install what the full test suite needs (Debian packages when root)
	@bash installer/dev/test-deps.sh

.PHONY: deps-check
deps-check: ## prove test-deps.sh is complete: a fresh Debian 12 root (mmdebstrap), its packages, proto/pam/packages and the tests inside it (root; 25-40 min)
	@bash installer/dev/deps-check.sh

$(GOBIN_TOOLS)/protoc-gen-go:
	GOBIN=$(GOBIN_TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(GOBIN_TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(GOBIN_TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

PROTO_OUT ?= .
.PHONY: proto
proto: $(GOBIN_TOOLS)/protoc-gen-go $(GOBIN_TOOLS)/protoc-gen-go-grpc ## regenerate Go from proto/ with the pinned generators
	@protoc --version | grep -q 'libprotoc $(PROTOC_VERSION)' || { echo "protoc $(PROTOC_VERSION) required (Debian 12: apt-get install protobuf-compiler); found: $$(protoc --version)"; exit 1; }
	PATH=$(GOBIN_TOOLS):$$PATH protoc -I proto \
	  --go_out=$(PROTO_OUT) --go_opt=module=github.com/mamori-dev/mamori \
	  --go-grpc_out=$(PROTO_OUT) --go-grpc_opt=module=github.com/mamori-dev/mamori \
	  proto/mamori/v1/*.proto

.PHONY: proto-check
proto-check: ## fail when the committed generated code differs from `make proto`
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; mkdir -p $$tmp/gen; \
	$(MAKE) --no-print-directory proto PROTO_OUT=$$tmp/gen >/dev/null || exit 1; \
	if ! diff -r -x '*.proto' $$tmp/gen/proto/mamori/v1 proto/mamori/v1; then \
	  echo "generated code drifted from proto/: run make proto and commit"; exit 1; fi; \
	echo "proto: generated code matches"

.PHONY: test
test: deps proto-check ## every test: unit, integration (real TLS, SQLite, PostgreSQL), end to end; installs what it needs
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	$(GO) mod verify
	MAMORI_VM_TEST=1 $(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list ./server/... ./agent/... ./internal/... | grep -v -e /vmtest -e /powercut)
	@bash installer/dev/fuzz.sh 3

.PHONY: fuzz
fuzz: ## run every fuzz target a few seconds each (FUZZTIME=5)
	@bash installer/dev/fuzz.sh $(or $(FUZZTIME),5)

.PHONY: test-vm
test-vm: deps ## on a real Debian kernel under qemu: the media control with USB sticks hot-plugged over QMP, the spool and the server's SQLite under 20 power cuts each (part of make test); the agent under its real systemd unit
	MAMORI_VM_TEST=1 $(GO) test -count=1 -timeout 20m ./agent/media/vmtest/ ./agent/spool/powercut/ ./server/store/powercut/ ./installer/vmtest/

PKG_VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
.PHONY: packages
packages: pam credprov ## build the installers into ./bin/packages: .deb, .rpm (with pam_mamori.so), .msi (with mamori-cp.dll; Authenticode-signed with SIGN_CERT=… SIGN_KEY=…)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w -B gobuildid' -o $(BIN)/linux-amd64/mamori-agent ./agent/cmd/mamori-agent
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/windows-amd64/mamori-agent.exe ./agent/cmd/mamori-agent
	$(GO) run ./installer/cmd/mamori-packages -version '$(PKG_VERSION)' -out $(BIN)/packages \
	  -linux-agent $(BIN)/linux-amd64/mamori-agent -windows-agent $(BIN)/windows-amd64/mamori-agent.exe \
	  -credential-provider $(BIN)/windows-amd64/mamori-cp.dll \
	  -udev-rule installer/udev/60-mamori-media.rules -pam-module $(BIN)/pam_mamori.so -sign-cert '$(SIGN_CERT)' -sign-key '$(SIGN_KEY)'
	@# The distributions' linters: errors and warnings fail the build; the
	@# overrides and filters carry their reasons (installer/packaging/linux/
	@# lintian-overrides, rpmlint.toml). `make deps` installs both; a missing
	@# one is a failure under CI=true and a notice otherwise.
	@if command -v lintian >/dev/null 2>&1; then lintian --fail-on error,warning --tag-display-limit 0 $(BIN)/packages/*.deb; \
	  elif [ "$${CI:-}" = true ]; then echo "lintian not installed (apt-get install lintian): required under CI=true"; exit 1; \
	  else echo "lintian not installed: .deb not linted (apt-get install lintian)"; fi
	@if command -v rpmlint >/dev/null 2>&1; then rpmlint -c installer/packaging/linux/rpmlint.toml $(BIN)/packages/*.rpm; \
	  elif [ "$${CI:-}" = true ]; then echo "rpmlint not installed (apt-get install rpmlint): required under CI=true"; exit 1; \
	  else echo "rpmlint not installed: .rpm not linted (apt-get install rpmlint)"; fi

.PHONY: bench
bench: ## benchmarks: report ingest (SQLite, PostgreSQL) vs a no-op mTLS call, the idle agent's RSS and wake-ups, fleet queries at 100k devices, console pages at 100k devices / 10M events, uevent→read-only latency, TPM handshakes, PAM login latency (TOTP, TPM PIN), Windows credential provider pipe p99 (wine)
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchtime 3s -timeout 30m ./server/store/... ./server/api/... | tee $(BIN)/bench.txt
	# the console at 100,000 devices / 10 million events (data set built once into $$TMPDIR/mamori-bench, ~1.5 GB)
	$(GO) test -count=1 -run '^$$' -bench Console -benchtime 20x -timeout 60m ./server/web/ | tee -a $(BIN)/bench.txt
	$(GO) test -count=1 -run '^$$' -bench UeventToReadOnly -benchtime 3000x ./agent/media | tee -a $(BIN)/bench.txt
	$(GO) test -count=1 -run '^$$' -bench Handshake -benchtime 2000x ./internal/tpm | tee -a $(BIN)/bench.txt
	# login second factor through the real PAM stack (root): TOTP and TPM PIN (swtpm) against PAM-only and no-op-agent baselines
	$(GO) test -count=1 -run '^$$' -bench PAMLogin -benchtime 2000x ./agent/pam/pamtest | tee -a $(BIN)/bench.txt
	# the verifier's own share of a code check, in process (wrong code, with the real spool, right code, unknown name)
	$(GO) test -count=1 -run '^$$' -bench Verify -benchtime 2000x ./agent/mfa | tee -a $(BIN)/bench.txt
	# Windows logon under wine: mamori-cp.dll's code check through the agent's pipe (p50/p99), a whole submission, and what the DLL adds to LogonUI's start
	MAMORI_CP_BENCH_N=2000 $(GO) test -count=1 -run '^TestUnderWine$$' -v -timeout 20m ./agent/loginmfa | grep BENCH | tee -a $(BIN)/bench.txt
	# the idle agent: the release build of mamori-agent enrolled into a mamori-server process, 3 minutes idle (root): RSS and wake-ups a minute
	$(GO) test -count=1 -run '^TestAgentIdleFootprint$$' -v -timeout 10m ./internal/hatest | grep FOOTPRINT | tee -a $(BIN)/bench.txt
	# the fleet runs of mamori-loadgen (about 20 minutes; MAMORI_FLEET_N and MAMORI_FLEET_DURATION shrink them)
	$(GO) test -count=1 -run '^$$' -bench Fleet -benchtime 1x -timeout 90m ./internal/hatest | tee -a $(BIN)/bench.txt

.PHONY: demo
demo: build ## start a server (SQLite under ./var) with its web console, enrol a local agent in monitor mode (MAMORI_EK_ROOTS=roots.pem: TPM vendor roots, docs/tpm.md); Ctrl-C stops both
	@bash installer/dev/demo.sh "$(BIN)" "$(CURDIR)/var"

.PHONY: clean
clean: ## remove ./bin and ./var
	rm -rf $(BIN) $(CURDIR)/var
