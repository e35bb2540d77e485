#!/usr/bin/env bash
# The suite on the oldest and newest supported Pythons, against the *built wheel* installed into
# a fresh virtualenv: a module or data file missing from the wheel fails here, not on a user's
# machine.  Interpreters are found under pyenv or on PATH; the output says which ran.
#
# The main run (.ci/run, Python 3.11) has every test at full strength.  Here the interpreters run
# side by side, the tests marked `slow` (servers, browsers, terminals, child suites) are left to
# the main run, and Hypothesis searches a quarter of its examples; the newest Python also runs
# every wrapper in checking mode (each state transition checked against states.TRANSITIONS).
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

# One interpreter: venv, wheel, install, suite.  Output goes to its log.
one() {
    local v=$1 py=$2 checking=$3 work=$4
    "$py" -m venv "$work/venv"
    local vpy="$work/venv/bin/python"
    "$vpy" -m pip install -q --upgrade pip
    "$vpy" -m pip wheel -q --no-deps -w "$work/dist" "$ROOT"
    local wheel
    wheel=$(ls "$work"/dist/callpyback-*.whl)
    echo "   wheel: $(basename "$wheel")"
    "$vpy" -m pip install -q "$wheel[test]" "$ROOT"/plugins/*/
    (cd "$work" && "$vpy" -c "import callpyback, sys; print('   testing', callpyback.__file__)")
    # The suite runs in a copy of the checkout without the package (tests/ is a package whose
    # parent pytest puts on sys.path): `import callpyback` can only find the wheel's, and
    # tests/conftest.py refuses to run otherwise.
    mkdir "$work/tree"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) \
        | grep -zv '^callpyback/' | (cd "$ROOT" && tar --null -T - -cf -) \
        | tar -xf - -C "$work/tree"
    (cd "$work/tree" && env CALLPYBACK_TEST_INSTALLED="$work/venv" \
        CALLPYBACK_HYPOTHESIS_SCALE=0.25 $checking \
        "$vpy" -m pytest -q -p no:cacheprovider -m "not slow")
}

pids=()
names=()
logs=()
missing=()
for v in "${versions[@]}"; do
    checking=""
    [ "$v" = "${versions[-1]}" ] && checking="CALLPYBACK_CHECK_TRANSITIONS=1"
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        echo "== Python $v: not installed on this machine, not run"
        missing+=("$v")
        continue
    fi
    work=$(mktemp -d "/tmp/callpyback-ci-py$v.XXXXXX")
    echo "== Python $v: $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))${checking:+, transitions checked}"
    one "$v" "$py" "$checking" "$work" > "$work.log" 2>&1 &
    pids+=("$!")
    names+=("$v")
    logs+=("$work.log")
done

failed=()
ran=()
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then ran+=("${names[$i]}"); else failed+=("${names[$i]}"); fi
    echo "== Python ${names[$i]}: log"
    grep -v "is ignored: it is neither a file nor a directory" "${logs[$i]}" | tail -40
done
echo "== matrix: passed on ${ran[*]:-none}${failed:+; FAILED on ${failed[*]}}${missing:+; not installed: ${missing[*]}}"
[ ${#failed[@]} -eq 0 ] && [ ${#ran[@]} -gt 0 ]
