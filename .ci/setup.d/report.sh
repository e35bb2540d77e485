# The run report's HTML is checked in a real browser (headless Chromium from Debian's packages)
# and `callpyback top` under tmux.  Sourced by .ci/run as root; installs only what is missing.
_report_missing=()
command -v chromium >/dev/null 2>&1 || _report_missing+=(chromium)
command -v tmux >/dev/null 2>&1 || _report_missing+=(tmux)
if [ "${#_report_missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${_report_missing[@]}" >/dev/null
fi
unset _report_missing
