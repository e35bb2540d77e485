# Debian's redis-server for the callpyback-redis tests (their fixtures start it themselves, on
# 127.0.0.1 and a free port, with persistence off).  Installed only when missing.
if ! command -v redis-server >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
