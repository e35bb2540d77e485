# PostgreSQL server binaries for the db plugin's tests (plugins/callpyback-db/tests): the tests
# start and stop their own throwaway cluster with initdb/pg_ctl on 127.0.0.1, as an
# unprivileged user.  Installed only when missing; nothing is started here.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "installing postgresql (for plugins/callpyback-db)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
