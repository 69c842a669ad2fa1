# Installs the Debian packages the build needs, when they are missing (shared by the demo,
# the test runner and CI). Runs apt-get only when something is absent.
BUILD_PACKAGES=(build-essential pkg-config clang libclang-dev libusb-1.0-0-dev libudev-dev)
# What the test suite needs beyond the build.
TEST_PACKAGES=(udev acl ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)

missing_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    echo "${missing[@]:-}"
}

ensure_packages() {
    local missing
    missing="$(missing_packages "$@")"
    [[ -z "${missing// /}" ]] && return 0
    echo "Installing Debian packages: $missing"
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    local log
    log="$(mktemp /tmp/apg-apt.XXXXXX)"
    # shellcheck disable=SC2086
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "apt-get could not install: $missing (log above)" >&2
        return 1
    fi
    rm -f "$log"
}

ensure_build_packages() {
    ensure_packages "${BUILD_PACKAGES[@]}"
    command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
}
