# Pearl2 firmware. `make run` and `make test` do all set-up on a fresh Debian 12 with the .NET SDK.
SHELL := /bin/bash
RID ?= linux-x64
OUT := out/$(RID)
PEARL2D := $(OUT)/pearl2d
DOTNET ?= dotnet
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1

# Debian 12 packages, by what needs them.
RUNTIME_PKGS := libavcodec59 libavformat59 libavutil57 libswscale6 libasound2
BUILD_PKGS   := clang lld llvm zlib1g-dev
ARM64_PKGS   := gcc-aarch64-linux-gnu libc6-dev-arm64-cross
TEST_PKGS    := ffmpeg gcc pkg-config libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
                gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
                gstreamer1.0-plugins-ugly gstreamer1.0-libav chromium fonts-dejavu-core \
                libc6-dev-arm64-cross python3 openssl curl iproute2 prometheus srt-tools
# Peers that are daemons: the discovery tests' (avahi with its own D-Bus, python-zeroconf, gssdp-discover, a GUPnP control
# point, minidlna) and the upload tests' (vsftpd, OpenSSH's sshd). They must not start on this machine when installed:
# the tests run them in namespaces and on loopback ports of their own.
PEER_DAEMON_PKGS := avahi-daemon avahi-utils dbus python3-zeroconf gupnp-tools gir1.2-gupnp-1.6 gir1.2-gssdp-1.6 gir1.2-gupnp-av-1.0 python3-gi minidlna \
                    vsftpd openssh-server openssh-sftp-server nginx-light libnginx-mod-rtmp libnginx-mod-stream
# python3 (http.server) and openssl (signing) are the update tests' server and release tooling; prometheus for promtool,
# which checks the admin panel's /metrics.
# libc6-dev-arm64-cross: the arm64 kernel headers the V4L2 ABI test compiles against (with clang from BUILD_PKGS)
BENCH_PKGS   := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 python3-gi nginx-light casync zsync wrk
# SD images: debootstrap and qemu for the base, the partition tools, the cross compiler for kernel modules,
# and for the image test qemu's U-Boot.
IMAGE_PKGS   := debootstrap qemu-system-arm qemu-utils u-boot-qemu dosfstools mtools e2fsprogs fdisk bmap-tools \
                cpio busybox-static kmod curl xz-utils file make gcc-aarch64-linux-gnu libc6-dev-arm64-cross openssl python3 \
                qemu-user-static

BOARD   ?= qemu-virt
VERSION := $(shell sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' firmware/Pearl2.Host/Pearl2.Host.csproj)
# The image test updates the qemu board from VERSION to this (same firmware, the next version in its release file).
VERSION_NEXT := $(shell echo $(VERSION) | awk -F. '{ print $$1 "." $$2 "." $$3 + 1 }')
# A throwaway signing key for the tests (out/ is never committed); releases pass their own KEY to update-bundle.
TEST_KEY := out/test-keys/update-key

# Installs the packages of $(1) that are missing (apt-get as root), and nothing when all are there.
define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get -q -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $$missing; \
	fi
endef

FUZZ_INPUTS ?= 1000000
FUZZ_SECONDS ?= 80

.PHONY: fuzz
# Every network parser: FUZZ_INPUTS in-process mutations each, then FUZZ_SECONDS of AFL++ (coverage-guided, SharpFuzz) each.
# Crashes and hangs land in tests/Pearl2.Fuzz/corpus/<target>/, which the unit tests replay.
fuzz: deps-build
	$(call apt_install,afl++)
	$(DOTNET) build tests/Pearl2.Fuzz/Pearl2.Fuzz.csproj -c Release
	$(DOTNET) tests/Pearl2.Fuzz/bin/Release/net10.0/pearl2-fuzz.dll campaign --inputs $(FUZZ_INPUTS) --out out/fuzz
	scripts/fuzz-afl.sh $(FUZZ_SECONDS)

.PHONY: all deps deps-runtime deps-build deps-test deps-bench deps-image build publish run test bench clean image image-test test-images test-key update-bundle release-key check-update-key

all: build

deps: deps-runtime deps-build deps-test deps-bench

deps-runtime:
	$(call apt_install,$(RUNTIME_PKGS))

deps-build:
	$(call apt_install,$(BUILD_PKGS) $(if $(filter linux-arm64,$(RID)),$(ARM64_PKGS)))

deps-test: deps-runtime deps-build
	$(call apt_install,$(TEST_PKGS))
	@missing=""; for p in $(PEER_DAEMON_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (their services kept from starting):$$missing"; \
	  own=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; $(SUDO) chmod 755 /usr/sbin/policy-rc.d; own=1; }; \
	  $(SUDO) apt-get -q -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $$missing; rc=$$?; \
	  [ -n "$$own" ] && $(SUDO) rm -f /usr/sbin/policy-rc.d; \
	  case "$$missing " in *" avahi-daemon "*) $(SUDO) systemctl disable --now avahi-daemon.service avahi-daemon.socket >/dev/null 2>&1 || true;; esac; \
	  case "$$missing " in *" minidlna "*) $(SUDO) systemctl disable --now minidlna.service >/dev/null 2>&1 || true;; esac; \
	  case "$$missing " in *" vsftpd "*) $(SUDO) systemctl disable --now vsftpd.service >/dev/null 2>&1 || true;; esac; \
	  case "$$missing " in *" openssh-server "*) $(SUDO) systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true;; esac; \
	  exit $$rc; \
	fi
	@command -v node >/dev/null || { $(SUDO) apt-get -q -o DPkg::Lock::Timeout=600 update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 nodejs npm; }
	@[ -f tests/browser/node_modules/mpegts.js/dist/mpegts.js ] && [ -d tests/browser/node_modules/openapi-response-validator ] \
	  && [ -d tests/browser/node_modules/@seriousme/openapi-schema-validator ] || (cd tests/browser && npm ci --no-audit --no-fund)

deps-bench: deps-test
	$(call apt_install,$(BENCH_PKGS))

deps-image:
	$(call apt_install,$(IMAGE_PKGS))

build:
	$(DOTNET) build Pearl2.Firmware.sln -c Release

# NativeAOT, one file, zero trim/AOT warnings (they are errors).
publish: deps-build
	$(DOTNET) publish firmware/Pearl2.Host/Pearl2.Host.csproj -c Release -r $(RID) -o $(OUT) -p:TreatWarningsAsErrors=true
	@rm -f $(OUT)/*.pdb $(OUT)/*.staticwebassets.endpoints.json
	@echo "published $(PEARL2D)"

# The firmware on this host: test pattern and tone, two channels; ports shift by 10000 when 554 cannot be bound.
run: deps-runtime publish
	$(PEARL2D) --port-offset auto --data-dir data

# The image tests always run: on a machine without the Debian base, make test builds it first (about 7 min on 2 cores,
# once; cached in /var/cache/pearl2-image with its .debs). PEARL2_SKIP_IMAGES=1 leaves the images out, and says so.
test: deps-test publish
	@if [ -n "$${PEARL2_SKIP_IMAGES:-}" ]; then echo "image tests left out: PEARL2_SKIP_IMAGES is set"; \
	 else $(MAKE) --no-print-directory deps-image && { image/build-base.sh --cached >/dev/null || { echo "the Debian base rootfs is not cached: building it (about 7 min, once)"; image/build-base.sh; }; } && $(MAKE) --no-print-directory test-images; fi
	$(DOTNET) test tests/Pearl2.Tests.Unit/Pearl2.Tests.Unit.csproj -c Release --logger "console;verbosity=normal"
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) test tests/Pearl2.Tests.Integration/Pearl2.Tests.Integration.csproj -c Release --logger "console;verbosity=normal"

# RTSP fan-out (TCP, UDP) against gst-rtsp-server, recording against ffmpeg -c copy, then HTTP-TS viewers against raw loopback TCP throughput.
bench: deps-bench publish
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- $(BENCH_ARGS)
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --record
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --http-ts --bitrate-kbps 50000 --ladder 100,200,400,600,800,1000,1200 --warmup 2 --window 5
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --update
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --admin
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --publish
	PEARL2D=$(abspath $(PEARL2D)) $(DOTNET) run --project tests/Pearl2.Bench/Pearl2.Bench.csproj -c Release -- --upload

# The SD-card image of BOARD (qemu-virt, rpi4-hdmi): out/pearl2-BOARD-VERSION.img, .bmap and .sha256.
# The first build makes the Debian base root file system (about 7 min on 2 cores, cached in
# /var/cache/pearl2-image); every later one takes about a minute.
# The release key: made once by make release-key, kept by the developer (back up the private half; every device
# made with an image of this key takes updates signed with it and no other).
RELEASE_KEY ?= $(HOME)/.config/pearl2/release-key
# UPDATE_KEY: the PEM public key the image trusts for updates; KEY: the private key update-bundle signs with.
UPDATE_KEY ?= $(RELEASE_KEY).pem
KEY ?= $(RELEASE_KEY).private.pem
# UPDATE_URL: the update server the image's default config polls (update.url); NO_UPDATES=1: an image that never updates.

release-key:
	@if [ -f "$(RELEASE_KEY).private.pem" ]; then echo "release key: $(RELEASE_KEY).private.pem (exists; kept)"; else \
	  mkdir -p "$$(dirname "$(RELEASE_KEY)")" && umask 077 && openssl ecparam -genkey -name prime256v1 -noout -out "$(RELEASE_KEY).private.pem" \
	  && openssl ec -in "$(RELEASE_KEY).private.pem" -pubout -out "$(RELEASE_KEY).pem" 2>/dev/null && chmod 644 "$(RELEASE_KEY).pem" \
	  && echo "release key made: $(RELEASE_KEY).private.pem (keep it safe and back it up: devices flashed with images made now take only updates signed with it)"; fi

# Refuses, before anything is built, to make an image that could never be updated without saying so.
check-update-key:
	@if [ -n "$(NO_UPDATES)" ]; then echo "WARNING: NO_UPDATES is set: this image will never take a firmware update"; \
	 elif [ ! -f "$(UPDATE_KEY)" ]; then echo "make image: no update key at $(UPDATE_KEY)."; \
	  echo "  An image without one can never be updated. Run 'make release-key' once (and keep the key it makes),"; \
	  echo "  or pass UPDATE_KEY=/path/public.pem, or NO_UPDATES=1 for an image that never updates."; exit 2; fi

image: check-update-key deps-image
	$(MAKE) --no-print-directory publish RID=linux-arm64
	PEARL2_UPDATE_KEY=$(if $(NO_UPDATES),,$(UPDATE_KEY)) PEARL2_UPDATE_URL=$(UPDATE_URL) PEARL2_SLOT=1 image/build-image.sh $(BOARD) $(VERSION) out/linux-arm64/pearl2d out

# An update for the update server: make update-bundle BOARD=qemu-virt [VERSION=x.y.z] [KEY=/path/private.pem] [OUT=out/update]
update-bundle: publish
	@[ -f "$(KEY)" ] || { echo "make update-bundle: no signing key at $(KEY): run 'make release-key' once, or pass KEY=/path/private.pem"; exit 2; }
	scripts/update-bundle.sh $(BOARD) $(VERSION) $(KEY) $(or $(OUT),out/update)

test-key:
	@mkdir -p out/test-keys; [ -f $(TEST_KEY).private.pem ] || { openssl ecparam -genkey -name prime256v1 -noout -out $(TEST_KEY).private.pem && openssl ec -in $(TEST_KEY).private.pem -pubout -out $(TEST_KEY).pem 2>/dev/null; }

# Boots the qemu-virt image in qemu-system-aarch64 and checks it from the host (about 4 min after the images),
# including an update from VERSION to VERSION_NEXT through the board's slot B.
image-test: test-images
	PEARL2_IMAGE_DIR=$(abspath out) $(DOTNET) test tests/Pearl2.Tests.Integration/Pearl2.Tests.Integration.csproj -c Release \
	  --filter "FullyQualifiedName~ImageLayoutTests|FullyQualifiedName~QemuBoardTests" --logger "console;verbosity=normal"

# Both boards' images trusting the test key, and the next version's update payload, for the image tests.
test-images: deps-image test-key
	$(MAKE) --no-print-directory publish RID=linux-arm64
	PEARL2_UPDATE_KEY=$(TEST_KEY).pem PEARL2_SLOT_ONLY=1 image/build-image.sh qemu-virt $(VERSION_NEXT) out/linux-arm64/pearl2d out
	PEARL2_UPDATE_KEY=$(TEST_KEY).pem image/build-image.sh qemu-virt $(VERSION) out/linux-arm64/pearl2d out
	PEARL2_UPDATE_KEY=$(TEST_KEY).pem image/build-image.sh rpi4-hdmi $(VERSION) out/linux-arm64/pearl2d out

clean:
	rm -rf out
	$(DOTNET) clean Pearl2.Firmware.sln >/dev/null
