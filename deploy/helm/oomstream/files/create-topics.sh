#!/usr/bin/env bash
# create-topics.sh - create oomstream's two topics with the recommended settings (idempotent).
#
#   create-topics.sh --bootstrap HOST:PORT [options]
#     --events-topic NAME          default oomstream.events.v1
#     --dead-letter-topic NAME     default oomstream.deadletter.v1
#     --events-partitions N        default 12 (about 1 per 100 nodes; see docs/operations.md#sizing)
#     --dead-letter-partitions N   default 3
#     --replication N              default 3
#     --min-insync N               default 2 (with acks=all: one broker may fail, nothing is lost)
#     --events-retention DURATION  default 7d  (ms, s, m, h, d suffixes)
#     --dead-letter-retention DUR  default 30d (time to fix the parser and reparse the raw lines)
#     --command-config FILE        client properties for SASL/TLS (passed to kafka-topics.sh)
#
# Needs Kafka's kafka-topics.sh on PATH, or KAFKA_TOPICS naming the command to run instead (e.g.
# KAFKA_TOPICS="deploy/local-kafka/kafka.sh tool topics"). The Helm chart runs this file in a Job
# (topics.job.enabled). Existing topics are left as they are and reported; their partitions are
# printed so a mismatch is visible.
set -euo pipefail

bootstrap="" events=oomstream.events.v1 deadletter=oomstream.deadletter.v1
events_partitions=12 deadletter_partitions=3 replication=3 min_insync=2
events_retention=7d deadletter_retention=30d command_config=""

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bootstrap) bootstrap=$2; shift 2 ;;
        --events-topic) events=$2; shift 2 ;;
        --dead-letter-topic) deadletter=$2; shift 2 ;;
        --events-partitions) events_partitions=$2; shift 2 ;;
        --dead-letter-partitions) deadletter_partitions=$2; shift 2 ;;
        --replication) replication=$2; shift 2 ;;
        --min-insync) min_insync=$2; shift 2 ;;
        --events-retention) events_retention=$2; shift 2 ;;
        --dead-letter-retention) deadletter_retention=$2; shift 2 ;;
        --command-config) command_config=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "create-topics.sh: unknown option $1" >&2; usage ;;
    esac
done
[ -n "$bootstrap" ] || { echo "create-topics.sh: --bootstrap HOST:PORT is required" >&2; usage; }

to_ms() {  # 7d -> 604800000
    local value=$1 number unit
    number=${value%%[a-z]*}; unit=${value#"$number"}
    [[ "$number" =~ ^[0-9]+$ ]] || { echo "create-topics.sh: bad duration '$value' (e.g. 7d, 12h, 3600000ms)" >&2; exit 2; }
    case "$unit" in
        ms|"") echo "$number" ;;
        s) echo $((number * 1000)) ;;
        m) echo $((number * 60000)) ;;
        h) echo $((number * 3600000)) ;;
        d) echo $((number * 86400000)) ;;
        *) echo "create-topics.sh: bad duration unit in '$value' (ms, s, m, h, d)" >&2; exit 2 ;;
    esac
}
for n in "$events_partitions" "$deadletter_partitions" "$replication" "$min_insync"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "create-topics.sh: '$n' is not a positive integer" >&2; exit 2; }
done
[ "$min_insync" -le "$replication" ] || { echo "create-topics.sh: --min-insync $min_insync exceeds --replication $replication" >&2; exit 2; }

read -r -a topics_cmd <<< "${KAFKA_TOPICS:-kafka-topics.sh}"
extra=()
[ -z "$command_config" ] || extra=(--command-config "$command_config")

create() {  # name partitions retention
    local name=$1 partitions=$2 retention_ms
    retention_ms=$(to_ms "$3")
    "${topics_cmd[@]}" --bootstrap-server "$bootstrap" "${extra[@]}" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor "$replication" \
        --config cleanup.policy=delete --config retention.ms="$retention_ms" \
        --config min.insync.replicas="$min_insync" --config compression.type=producer \
        --config max.message.bytes=4194304
    "${topics_cmd[@]}" --bootstrap-server "$bootstrap" "${extra[@]}" --describe --topic "$name" | head -n1
}
create "$events" "$events_partitions" "$events_retention"
create "$deadletter" "$deadletter_partitions" "$deadletter_retention"
