#!/usr/bin/env bash
# Move the tests so their folders mirror the product's packages (issue 16):
#   triage/**      -> tests/triage/**             (core modules, sigma, report, testing, formats, cli, fleet)
#   analyzers/<p>  -> tests/analyzers/<p>/        (eventlog, exchange, memory, registry, yara)
#   collectors/    -> tests/collectors/           (already there)
#   signatures/    -> tests/signatures/sigma/     (the Sigma pack's own tests: samples, coverage, baseline)
# Tests of the whole product stay at the top: test_structure.py, fuzz/, test_samples.py, benchmarks.
#
# Run once from the repository root AFTER every issue-16 branch is merged (moves conflict with edits in flight),
# then run the suite and commit. The folders get no __init__.py on purpose: with pytest's default import mode a
# tests/triage package would shadow the product's `triage`. Files that moved one level deeper find the repository
# root one parent further up (the perl line), and the documents that name test paths are updated (the sed lines).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d tests/core ] || { echo "tests already mirrored (tests/core is gone)" >&2; exit 1; }

mkdir -p tests/triage tests/analyzers tests/signatures

# -- triage core: same depth (tests/core/x.py -> tests/triage/x.py)
for f in tests/core/*.py; do git mv "$f" tests/triage/; done
# -- one level deeper
deeper=()
git mv tests/sigma tests/triage/sigma;             deeper+=(tests/triage/sigma)
git mv tests/report tests/triage/report;           deeper+=(tests/triage/report)
git mv tests/testing tests/triage/testing;         deeper+=(tests/triage/testing)
git mv tests/formats tests/triage/formats;         deeper+=(tests/triage/formats)
for f in test_cli.py test_fleet_cli.py test_fleet_verify.py; do
  git mv "tests/$f" "tests/triage/$f";             deeper+=("tests/triage/$f")
done
for p in eventlog exchange memory registry yara; do
  git mv "tests/$p" "tests/analyzers/$p";          deeper+=("tests/analyzers/$p")
done
git mv tests/sigma_pack tests/signatures/sigma;    deeper+=(tests/signatures/sigma)

# the repository root is one parent further up from a file that moved one level deeper
grep -rlZ --include='*.py' '__file__' "${deeper[@]}" \
  | xargs -0 -r perl -pi -e 's/(__file__\)\.resolve\(\)\.parents\[)(\d+)\]/$1.($2+1)."]"/ge'

# documents and comments that name test paths
sed_paths=(
  -e 's#tests/sigma_pack/#tests/signatures/sigma/#g'
  -e 's#tests/sigma/#tests/triage/sigma/#g'
  -e 's#tests/memory/#tests/analyzers/memory/#g'
  -e 's#tests/registry/#tests/analyzers/registry/#g'
  -e 's#tests/yara\b#tests/analyzers/yara#g'
  -e 's#tests/exchange\b#tests/analyzers/exchange#g'
)
grep -rlE --include='*.md' --include='*.py' --include='*.yaml' \
  'tests/(sigma_pack|sigma|memory|registry|yara|exchange)' README.md signatures triage analyzers collectors \
  | xargs -r sed -i "${sed_paths[@]}"

rmdir tests/core 2>/dev/null || true
git status --short | head -n 80
echo "moved; now run: make test"
