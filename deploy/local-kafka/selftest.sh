#!/usr/bin/env bash
# selftest.sh - end-to-end check of kafka.sh against real brokers (~1-2 min on 2 cores).
#
#   deploy/local-kafka/selftest.sh
#
# Uses its own cluster names/ports so it can run next to `make run`/`make test` clusters:
#   selftest-single : 127.0.0.1:$SELFTEST_PORT            (default 39092, controller +100)
#   selftest-trio   : 127.0.0.1:$((SELFTEST_PORT+200))..+202 (controllers +100)
# Steps: fetch; single: start, create topic, produce (acks=all) + consume, stop;
# trio: start, auto-created topic has RF 3, kill-node 2, produce with acks=all still works,
# start-node 2, ISR back to 3, stop. Both clusters are stopped (and cleaned) on exit.
# Prints "N passed, N failed" at the end; exit 0 only if everything passed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
K="$HERE/kafka.sh"
P1="${SELFTEST_PORT:-39092}"
P3=$((P1 + 200))
S=selftest-single
T=selftest-trio
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # description, command...
  local d="$1"
  shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  "$K" clean --name "$S" >/dev/null 2>&1
  "$K" clean --name "$T" >/dev/null 2>&1
}
trap cleanup EXIT

t=$(now)
check "fetch" "$K" fetch
echo "     fetch took $(since "$t") s"

# ------------------------------------------------------------------ single node
t=$(now)
bs1="$("$K" start --name "$S" --port "$P1" | tail -n1)"
check "start single -> bootstrap 127.0.0.1:$P1" test "$bs1" = "127.0.0.1:$P1"
echo "     single start took $(since "$t") s"
check "status single" "$K" status --name "$S"
check "create topic" "$K" tool topics --bootstrap-server "$bs1" --create --topic selftest \
  --partitions 3 --replication-factor 1
msg="oom-$$-$RANDOM"
check "produce (acks=all)" bash -c "echo '$msg' | '$K' tool console-producer --bootstrap-server '$bs1' \
  --topic selftest --producer-property acks=all"
got="$("$K" tool console-consumer --bootstrap-server "$bs1" --topic selftest --from-beginning \
  --max-messages 1 --timeout-ms 30000 2>/dev/null)"
check "consume the message back" test "$got" = "$msg"
t=$(now)
check "stop single" "$K" stop --name "$S"
echo "     single stop took $(since "$t") s"
check "status says not running" bash -c "! '$K' status --name '$S' >/dev/null"
check "stop again is not an error" "$K" stop --name "$S"

# ------------------------------------------------------------------ three nodes
t=$(now)
bs3="$("$K" start --name "$T" --nodes 3 --port "$P3" | tail -n1)"
check "start trio -> 3 bootstrap servers" test "$bs3" = "127.0.0.1:$P3,127.0.0.1:$((P3 + 1)),127.0.0.1:$((P3 + 2))"
echo "     3-node start took $(since "$t") s"
check "auto-create topic via produce" bash -c "echo first | '$K' tool console-producer \
  --bootstrap-server '$bs3' --topic ha --producer-property acks=all"
desc="$("$K" tool topics --bootstrap-server "$bs3" --describe --topic ha 2>/dev/null)"
check "auto-created topic has RF 3, min ISR 2" grep -q 'ReplicationFactor: 3.*min.insync.replicas=2' <<<"$desc"
check "kill-node 2" "$K" kill-node 2 --name "$T"
check "status shows node 2 down" bash -c "'$K' status --name '$T' | grep -q 'node 2 .*not running'"
t=$(now)
check "produce with acks=all while node 2 is down" bash -c "printf 'second\nthird\n' | '$K' tool console-producer \
  --bootstrap-server '$bs3' --topic ha --producer-property acks=all \
  --producer-property request.timeout.ms=10000 --producer-property delivery.timeout.ms=60000"
echo "     produce with node 2 down took $(since "$t") s"
t=$(now)
check "start-node 2" "$K" start-node 2 --name "$T"
echo "     start-node 2 took $(since "$t") s"
isr_ok() {
  local i
  for i in $(seq 30); do
    "$K" tool topics --bootstrap-server "$bs3" --describe --topic ha 2>/dev/null \
      | awk '/Partition:/ { n = split($0, a, "Isr: "); split(a[2], b, "\t"); if (split(b[1], c, ",") != 3) bad = 1 } END { exit bad }' \
      && return 0
    sleep 1
  done
  return 1
}
check "all partitions back to ISR 3" isr_ok
got="$("$K" tool console-consumer --bootstrap-server "$bs3" --topic ha --from-beginning \
  --max-messages 3 --timeout-ms 30000 2>/dev/null | sort | tr '\n' ' ')"
check "consume all 3 messages" test "$got" = "first second third "
t=$(now)
check "stop trio" "$K" stop --name "$T"
echo "     3-node stop took $(since "$t") s"
check "no broker of the selftest left" bash -c "! pgrep -f 'kafka[.]Kafka .*/work/selftest-' >/dev/null"

echo "selftest: $passed passed, $failed failed"
((failed == 0))
