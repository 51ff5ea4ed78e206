#!/usr/bin/env bash
# Make the Debian base image that the Dockerfile's FROM names, from Debian's own packages
# (debootstrap + docker import), for machines that cannot pull from Docker Hub.
#
#   docker/make-base.sh [TAG]      (default: the Dockerfile's ARG BASE_IMAGE)
#
# The result mimics the official debian:<suite>-<date>-slim image: a minbase system with the
# suite, -updates and -security sources, no apt lists, no docs. Where Docker Hub can be
# reached, pulling the tag (pinned by digest, see the Dockerfile) is the better choice.
# Environment: DEBIAN_MIRROR and DEBIAN_SECURITY (default: the archives in this machine's apt
# sources; there is no built-in mirror), DOCKER (client).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
TAG=${1:-$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -n 1)}
SUITE=$(printf '%s\n' "$TAG" | sed -n 's/^debian:\([a-z]*\).*/\1/p')
if [ -z "$TAG" ] || [ -z "$SUITE" ]; then echo "make-base: cannot tell the Debian suite of '$TAG'" >&2; exit 64; fi

apt_sources() {  # "URI SUITE" for every Debian source of this machine's apt configuration
    # deb822 stanzas (/etc/apt/sources.list.d/*.sources): one line per URI and suite
    awk 'FNR == 1 || NF == 0 { flush() }
         $1 == "URIs:" { uris = ""; for (i = 2; i <= NF; i++) uris = uris " " $i }
         $1 == "Suites:" { suites = ""; for (i = 2; i <= NF; i++) suites = suites " " $i }
         function flush(  u, s, nu, ns, i, j) {
             nu = split(uris, u, " "); ns = split(suites, s, " ")
             for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
             uris = ""; suites = "" }
         END { flush() }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    # one-line format (/etc/apt/sources.list, *.list): deb [options] URI SUITE COMPONENTS...
    sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+\([^[:space:]]\+\).*/\2 \3/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
    return 0  # (a missing sources file is no error: the lists above are what was found)
}
# the archive: the first source of any suite of this machine's Debian (SUITE, SUITE-updates...)
# that is not SUITE-security; the security archive: the source of a *-security suite.
# DEBIAN_MIRROR / DEBIAN_SECURITY override both.
SOURCES=$(apt_sources)
HOST_SUITE=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
pick() {  # pick security|archive: the URI of the first matching source line
    printf '%s\n' "$SOURCES" | awk -v want="$1" -v suite="$SUITE" -v host="$HOST_SUITE" '
        NF != 2 { next }
        { base = $2; sub(/-[a-z]+$/, "", base); sec = ($2 ~ /-security$/) }
        (base == suite || base == host) && ((want == "security") == sec) { print $1; exit }'
}
MIRROR=${DEBIAN_MIRROR:-$(pick archive)}
SECURITY=${DEBIAN_SECURITY:-$(pick security)}
if [ -z "$MIRROR" ]; then
    echo "make-base: no Debian archive in this machine's apt sources (/etc/apt/sources.list," \
         "/etc/apt/sources.list.d/): set DEBIAN_MIRROR to the Debian mirror to bootstrap from" \
         "(and DEBIAN_SECURITY to its security archive)." >&2
    exit 64
fi
SECURITY=${SECURITY:-${MIRROR%/debian}/debian-security}

if "$DOCKER" image inspect "$TAG" > /dev/null 2>&1; then
    echo "make-base: $TAG is already there"
    exit 0
fi
command -v debootstrap > /dev/null || {
    echo "make-base: installing debootstrap"
    apt-get install -y -qq debootstrap > /dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap > /dev/null; }
}

ROOT=$(mktemp -d /tmp/bids_decode-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "make-base: debootstrap $SUITE from $MIRROR (a few minutes)"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" > "$ROOT.log" 2>&1 || {
    tail -n 20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"

rm -f "$ROOT/etc/apt/sources.list"
cat > "$ROOT/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# what the official slim images drop, and what they keep apt from downloading again
cat > "$ROOT/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
echo 'APT::Install-Recommends "false";' > "$ROOT/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/usr/share/doc/*/[!c]* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
       "$ROOT"/var/log/*.log "$ROOT"/tmp/* 2> /dev/null || true

tar -C "$ROOT" --numeric-owner -c . | "$DOCKER" import \
    --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $SUITE $MIRROR" - "$TAG" > /dev/null
echo "make-base: made $TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
