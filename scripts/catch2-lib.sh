# shellcheck shell=bash
# catch2-lib.sh: shared by check and check-sanitize. Sourced, not run.

# catch2_counts LOG RESULT: turn a Catch2 v2 console summary into "PASSED
# FAILED". A test tagged [!mayfail] that failed (a known bug, see its
# comment) is "failed as expected": neither passed nor failed, like a TAP
# TODO; the log says how many there were.
catch2_counts() {
    local log=$1 result=$2 line passed=0 failed=0 expected=0
    line=$(grep -E '^(All tests passed|test cases:)' "$log" | tail -n 1 || true)
    if [[ $line =~ ^All\ tests\ passed.*\ in\ ([0-9]+)\ test\ case ]]; then
        passed=${BASH_REMATCH[1]}
    elif [[ $line =~ ^test\ cases: ]]; then
        [[ $line =~ ([0-9]+)\ passed ]] && passed=${BASH_REMATCH[1]}
        [[ $line =~ ([0-9]+)\ failed(\ \||$) ]] && failed=${BASH_REMATCH[1]}
        [[ $line =~ ([0-9]+)\ failed\ as\ expected ]] && expected=${BASH_REMATCH[1]}
    else
        # No summary: the binary crashed or matched no test. Never a pass.
        failed=1
        echo "$(basename "$result" .result): no Catch2 summary (crash, or no test matched); counted as 1 failure"
    fi
    if [ "$expected" -gt 0 ]; then
        echo "$(basename "$result" .result): $expected test(s) tagged [!mayfail] failed as expected (known bugs; not counted)"
    fi
    echo "$passed $failed" >"$result"
}
