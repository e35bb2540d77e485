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
    # The newest Python also runs every wrapper in checking mode: each state transition is
    # checked against states.TRANSITIONS, and an illegal one fails the test that made it.
    checking=""
    [ "$v" = "${versions[-1]}" ] && checking="env CALLPYBACK_CHECK_TRANSITIONS=1"
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
    # The suite runs in a copy of the checkout without the package (tests/ is a package whose
    # parent pytest puts on sys.path): `import callpyback` can only find the wheel's, and
    # tests/conftest.py refuses to run otherwise.
    mkdir "$work/tree"
    git ls-files -z --cached --others --exclude-standard | grep -zv '^callpyback/' \
        | tar --null -T - -cf - | tar -xf - -C "$work/tree"
    (cd "$work/tree" && CALLPYBACK_TEST_INSTALLED="$work/venv" $checking "$vpy" -m pytest -q \
        -p no:cacheprovider)
    ran+=("$v${checking:+ (transitions checked)}")
    rm -rf "$work"
done
echo "== matrix: ran on ${ran[*]:-none}${missing:+; not installed: ${missing[*]}}"
[ ${#ran[@]} -gt 0 ]
