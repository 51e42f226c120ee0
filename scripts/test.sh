#!/usr/bin/env bash
# Runs the unit tests (cmocka) and the end-to-end tests (node:test driving the real
# binary, a real redis-server and a real node-resque worker), then prints the totals.
# Usage: scripts/test.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
passed=0
failed=0

count() { # count PATTERN TEXT: the sum of the numbers after PATTERN in TEXT
    grep -oE "$1 *[0-9]+" <<<"$2" | grep -oE '[0-9]+$' | awk '{s += $1} END {print s + 0}'
}

for test in "$build"/tests/test_*; do
    [ -x "$test" ] || continue
    output=$("$test" 2>&1)
    status=$?
    printf '%s\n' "$output"
    ok=$(count '\[  PASSED  \]' "$output")
    bad=$(count '\[  FAILED  \]' "$output")
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "$test exited with status $status"
        bad=1
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
done

output=$(JOBGATE="$build/jobgate" node --test --test-reporter=tap \
    --test-concurrency=1 tests/e2e/ 2>&1)
status=$?
printf '%s\n' "$output"
ok=$(count '^# pass' "$output")
# A test that timed out is reported as cancelled, not failed: it did not pass either.
bad=$(($(count '^# fail' "$output") + $(count '^# cancelled' "$output")))
if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
    echo "end-to-end tests exited with status $status"
    bad=1
fi
passed=$((passed + ok))
failed=$((failed + bad))

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
