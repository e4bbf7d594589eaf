# shellcheck shell=bash
# catch2-lib.sh: shared by check and check-sanitize. Sourced, not run.

# catch2_counts LOG RESULT: turn the summary of our Catch2 reporter
# (tests/support/main.cpp), "test cases: N | N passed | N failed | N skipped
# [| N failed as expected]", into "PASSED FAILED SKIPPED". A test tagged
# [!mayfail] that failed (a known bug, see its comment) is "failed as
# expected": neither passed nor failed, like a TAP TODO; the log says how
# many there were.
catch2_counts() {
    local log=$1 result=$2 line
    line=$(grep -E '^test cases:' "$log" | tail -n 1 || true)
    if [[ $line =~ ^test\ cases:\ ([0-9]+)\ \|\ ([0-9]+)\ passed\ \|\ ([0-9]+)\ failed\ \|\ ([0-9]+)\ skipped ]]; then
        echo "${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]}" >"$result"
        if [[ $line =~ ([0-9]+)\ failed\ as\ expected ]]; then
            echo "$(basename "$result" .result): ${BASH_REMATCH[1]} test(s) tagged [!mayfail] failed as expected (known bugs; not counted)"
        fi
    else
        # No summary: the binary crashed, matched no test, or ran with
        # another reporter (which does not count skips). Never a pass.
        echo "0 1 0" >"$result"
        echo "$(basename "$result" .result): no summary of ours (crash, or no test matched); counted as 1 failure"
    fi
}
