# Sourced by the fetch-*.sh scripts: `download_wheel PKG GLOB DIR` downloads PKG's wheel
# from PyPI (no dependencies; pip from $PIP, else pip3, else python3 -m pip) into DIR and
# prints the path of the wheel matching GLOB, or fails with a message through `log`.
download_wheel() {
    local pkg="$1" glob="$2" dir="$3" pip="${PIP:-}" wheel
    if [ -z "$pip" ]; then
        if command -v pip3 >/dev/null 2>&1; then pip=pip3; else pip="python3 -m pip"; fi
    fi
    $pip download --no-deps --progress-bar on --disable-pip-version-check -d "$dir" "$pkg" >&2
    wheel="$(find "$dir" -maxdepth 1 -name "$glob" | head -n1)"
    if [ -z "$wheel" ]; then
        log "error: pip produced no $glob wheel in $dir"
        return 1
    fi
    printf '%s\n' "$wheel"
}
