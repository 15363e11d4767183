#!/usr/bin/env bash
# Benchmark (not a test): the makespan of a deploy with one secondary region against one with
# three, on the timing emulator (RDS, NAT and CloudFront take real seconds; every call has a
# latency). SPEC v3: regions proceed in parallel, so three secondaries should cost about what
# one does. Prints both makespans (the run's own elapsed time) and their ratio.
#
#   localstack/bench-regions.sh            # port 4570, builds tap first
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port=${TAP_BENCH_PORT:-4570}
export TAP_EMULATOR_PORT=$port
export TAP_TIMING_LATENCY=${TAP_TIMING_LATENCY:-rds=0.05,cloudfront=0.05,ec2=0.02,iam=0.02,s3=0.02,kms=0.02,lambda=0.02,autoscaling=0.02}
export TAP_TIMING_RDS_CREATE=${TAP_TIMING_RDS_CREATE:-8} TAP_TIMING_CF_DEPLOY=${TAP_TIMING_CF_DEPLOY:-6}
export TAP_TIMING_NAT_CREATE=${TAP_TIMING_NAT_CREATE:-3}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
cargo build --quiet --bin tap
localstack/emulator.sh start --timing >/dev/null
trap 'localstack/emulator.sh stop >/dev/null || true' EXIT
dir=$(mktemp -d)
makespan() { # ENV SECONDARIES -> seconds of the deploy
  local env=$1 regions=$2
  local s
  s=$(target/debug/tap --env "$env" --state "$dir/$env.json" --endpoint-url "http://127.0.0.1:$port" \
      --secondary-region "$regions" --json deploy --yes 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    v = json.loads(line)
    if v.get("type") == "summary": print(v["elapsed_s"])')
  target/debug/tap --env "$env" --state "$dir/$env.json" --endpoint-url "http://127.0.0.1:$port" \
      --secondary-region "$regions" destroy --yes >/dev/null 2>&1
  echo "$s"
}
one=$(makespan bench1 eu-west-1)
three=$(makespan bench3 eu-west-1,ap-southeast-2,sa-east-1)
python3 - "$one" "$three" <<'PY'
import sys
one, three = map(float, sys.argv[1:])
print(f"deploy makespan, 1 secondary:  {one:.1f} s")
print(f"deploy makespan, 3 secondaries: {three:.1f} s ({(three / one - 1) * 100:+.1f} %)")
PY
