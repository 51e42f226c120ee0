#!/usr/bin/env bash
# Runs the unit tests (cmocka), the JSON Schema test suite and the end-to-end tests
# (node:test driving the real binary, a real redis-server and a real node-resque
# worker) and the Ruby worker kit's tests (minitest), then prints the totals.
# Usage: scripts/test.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shared=${JOBGATE_SHARED:-../shared}
passed=0
failed=0

count() { # count PATTERN TEXT: the sum of the numbers after PATTERN in TEXT
    grep -oE "$1 *[0-9]+" <<<"$2" | grep -oE '[0-9]+$' | awk '{s += $1} END {print s + 0}'
}

# tally NAME STATUS OUTPUT OK BAD: adds a run's counts; a run that failed without
# saying how (a crash, a sanitizer report) counts as one failure.
tally() {
    printf '%s\n' "$3"
    if [ "$2" -ne 0 ] && [ "$5" -eq 0 ]; then
        echo "$1 exited with status $2"
        set -- "$1" "$2" "$3" "$4" 1
    fi
    passed=$((passed + $4))
    failed=$((failed + $5))
}

for test in "$build"/tests/test_*; do
    [ -x "$test" ] || continue
    output=$("$test" 2>&1)
    status=$?
    tally "$test" "$status" "$output" "$(count '\[  PASSED  \]' "$output")" \
        "$(count '\[  FAILED  \]' "$output")"
done

output=$("$build/schema_suite" "$shared/json-schema-suite/draft2020-12" 2>&1)
status=$?
summary=$(tail -n 1 <<<"$output")
tally "schema suite" "$status" "$output" "$(count '^' "${summary%% passed*}")" \
    "$(count ', ' "${summary% failed}")"

output=$(JOBGATE="$build/jobgate" node --test --test-reporter=tap \
    --test-concurrency=1 tests/e2e/ 2>&1)
status=$?
# A test that timed out is reported as cancelled, not failed: it did not pass either.
tally "end-to-end tests" "$status" "$output" "$(count '^# pass' "$output")" \
    "$(($(count '^# fail' "$output") + $(count '^# cancelled' "$output")))"

output=$(JOBGATE_SHARED="$shared" ruby tests/workers/test_kit.rb 2>&1)
status=$?
# minitest ends with "N runs, N assertions, N failures, N errors, N skips"; a skipped test
# did not pass either.
read -r runs not_passed < <(grep -E '^[0-9]+ runs, ' <<<"$output" |
    awk -F', ' '{ runs = $1 + 0; bad = $3 + $4 + $5 } END { print runs + 0, bad + 0 }')
tally "Ruby worker kit" "$status" "$output" "$((runs - not_passed))" "$not_passed"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
