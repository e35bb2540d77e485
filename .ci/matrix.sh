#!/usr/bin/env bash
# The suite on the oldest and newest supported Pythons, against the *built wheel* installed into
# a fresh virtualenv: a module or data file missing from the wheel fails here, not on a user's
# machine.  Interpreters are found under pyenv or on PATH; the output says which ran.
#
#   .ci/matrix.sh [VERSION ...]     (default: 3.9 3.13)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.9 3.13)

find_python() {
    local v=$1 p
    if command -v pyenv >/dev/null 2>&1; then
        for p in "$(pyenv root)"/versions/"$v".*/bin/python"$v"; do
            [ -x "$p" ] && { echo "$p"; return; }
        done
    fi
    command -v "python$v" 2>/dev/null || true
}

ran=()
missing=()
for v in "${versions[@]}"; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        echo "== Python $v: not installed on this machine, not run"
        missing+=("$v")
        continue
    fi
    echo "== Python $v: $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
    work=$(mktemp -d "/tmp/callpyback-ci-py$v.XXXXXX")
    "$py" -m venv "$work/venv"
    vpy="$work/venv/bin/python"
    "$vpy" -m pip install -q --upgrade pip
    "$vpy" -m pip wheel -q --no-deps -w "$work/dist" "$ROOT"
    wheel=$(ls "$work"/dist/callpyback-*.whl)
    echo "   wheel: $(basename "$wheel")"
    "$vpy" -m pip install -q "$wheel[test]" "$ROOT"/plugins/*/
    # From outside the checkout: the import must resolve to the installed wheel.
    (cd "$work" && "$vpy" -c "import callpyback, sys; print('   testing', callpyback.__file__)")
    # Run from outside the checkout (``-m`` puts the working directory on sys.path), so
    # `import callpyback` in the tests is the wheel's; tests/conftest.py refuses otherwise.
    (cd "$work" && CALLPYBACK_TEST_INSTALLED="$work/venv" "$vpy" -m pytest -q \
        -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$ROOT" \
        "$ROOT"/tests "$ROOT"/plugins)
    ran+=("$v")
    rm -rf "$work"
done
echo "== matrix: ran on ${ran[*]:-none}${missing:+; not installed: ${missing[*]}}"
[ ${#ran[@]} -gt 0 ]
