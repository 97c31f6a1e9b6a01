# dray: the front door. `make` builds, `make test` installs what the tests need and runs them
# (as root), `make demo` runs containers through drayd, `make install` installs the binaries.

PREFIX ?= /usr/local
CARGO ?= cargo
# Static binaries for this target (see .cargo/config.toml).
RELEASE_DIR := target/x86_64-unknown-linux-gnu/release
RELEASE_BIN := $(RELEASE_DIR)/dray
SHIM_BIN := $(RELEASE_DIR)/containerd-shim-dray-v2
DRAYD_BIN := $(RELEASE_DIR)/drayd
DRAYCTL_BIN := $(RELEASE_DIR)/drayctl
FIXTURES := target/fixtures
# Debian packages the tests use: busybox-static (test images), jq (fixture script), tini (a
# child subreaper: PID 1 here reaps orphans late), containerd, podman and docker.io (real engines), iproute2 (veth),
# gcc and libc6-dev (a static syscall probe, tests/fixtures/probe.c), runc and crun (the shim drives them
# through BinaryName), protobuf-compiler (protoc, for drayd's API), docker-registry, skopeo,
# umoci, zstd, curl and openssl (the image store's registry, test images, reference unpacker,
# token server).
TEST_PACKAGES := busybox-static jq tini containerd podman docker.io iproute2 gcc libc6-dev runc crun \
	protobuf-compiler docker-registry skopeo umoci zstd curl openssl \
	containernetworking-plugins iptables nftables

.PHONY: all build test unit e2e fuzz lint demo install deps fixtures clean bench

all: build

build: deps
	$(CARGO) build --release --workspace --bins

deps:
	@missing=""; \
	for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

fixtures: build deps
	tests/fixtures/mkbundle.sh $(FIXTURES)/busybox $(RELEASE_BIN)
	rm -rf $(FIXTURES)/images && python3 tests/fixtures/mkimage.py $(FIXTURES)/images

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins

# End-to-end tests run real containers as root, under tini as child subreaper.
e2e: fixtures
	DRAY_BIN=$(CURDIR)/$(RELEASE_BIN) DRAY_TEMPLATE=$(CURDIR)/$(FIXTURES)/busybox \
		DRAYD_BIN=$(CURDIR)/$(DRAYD_BIN) DRAYCTL_BIN=$(CURDIR)/$(DRAYCTL_BIN) DRAY_IMAGES=$(CURDIR)/$(FIXTURES)/images \
		tini -s -- $(CARGO) test -p dray-e2e --tests --no-fail-fast -- --test-threads=2

# Fuzz targets of the manager's parsers of outside input (cargo-fuzz; on the stable toolchain
# through RUSTC_BOOTSTRAP, without a sanitizer): the layer applier; the manifest, config,
# reference and challenge parsers; DNS queries, CNI answers and port specs; each run for
# FUZZ_SECONDS, seeded with the test layers.
FUZZ_SECONDS ?= 20
fuzz: fixtures
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p manager/fuzz/corpus/unpack_layer manager/fuzz/corpus/manifests
	@for f in $(FIXTURES)/images/*/blobs/sha256/*; do \
		if gzip -t $$f 2>/dev/null; then zcat $$f | head -c 65536 > manager/fuzz/corpus/unpack_layer/$$(basename $$f); \
		elif [ $$(stat -c %s $$f) -lt 65536 ]; then cp $$f manager/fuzz/corpus/manifests/; fi; done
	cd manager/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none unpack_layer -- -max_total_time=$(FUZZ_SECONDS)
	cd manager/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none manifests -- -max_total_time=$(FUZZ_SECONDS)
	cd manager/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none network -- -max_total_time=$(FUZZ_SECONDS)

test: deps build unit e2e fuzz

demo: build deps
	@demo/demo.sh $(RELEASE_DIR) target/demo

install: build
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/dray
	install -D -m 0755 $(SHIM_BIN) $(DESTDIR)$(PREFIX)/bin/containerd-shim-dray-v2
	install -D -m 0755 $(DRAYD_BIN) $(DESTDIR)$(PREFIX)/bin/drayd
	install -D -m 0755 $(DRAYCTL_BIN) $(DESTDIR)$(PREFIX)/bin/drayctl

clean:
	$(CARGO) clean

# Benchmarks: dray beside runc and crun in one run (bench/bench.py), then drayd's images beside
# containerd, podman and dockerd (bench/images.py), then drayd's containers beside dockerd,
# podman and ctr (bench/containers.py). BENCH_ONLY=runtime|shim|images|containers runs one part.
bench: build deps
	@for p in hyperfine runc crun /usr/bin/time; do command -v $$p >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine runc crun time >/dev/null; break; }; done
	@if [ -z "$(BENCH_ONLY)" ] || [ "$(BENCH_ONLY)" = runtime ] || [ "$(BENCH_ONLY)" = shim ]; then tini -s -- python3 bench/bench.py; fi
	@if [ -z "$(BENCH_ONLY)" ] || [ "$(BENCH_ONLY)" = images ]; then tini -s -- python3 bench/images.py; fi
	@if [ -z "$(BENCH_ONLY)" ] || [ "$(BENCH_ONLY)" = containers ]; then tini -s -- python3 bench/containers.py; fi
