#!/usr/bin/env bash
# kafka.sh - fetch, configure, start and stop a REAL Apache Kafka (KRaft) on 127.0.0.1
#
# Used by oomstream's `make run`, `make test` and the fault tests. No Docker:
# Kafka's jars come from Maven Central (pom.xml next to this script) into lib/.
# Works from any current directory.
#
# USAGE
#   kafka.sh fetch                       download jars into lib/ (skipped when lib/ is
#                                        up to date with pom.xml; needs java + mvn)
#   kafka.sh start [--nodes N] [--port P] [--controller-port C] [--name NAME]
#                  [--timeout SECS] [--keep]
#                                        (fetch if needed,) write configs, format storage,
#                                        start the node(s) in the background and wait until
#                                        every node serves Kafka Metadata listing all brokers.
#                                        LAST LINE ON STDOUT = bootstrap string, e.g.
#                                        "127.0.0.1:9092" or "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094".
#                                        Storage is wiped and reformatted unless --keep.
#                                        If the same cluster is already fully running it
#                                        just prints the bootstrap string (exit 0).
#   kafka.sh stop [--nodes N] [--name NAME] [--all]
#                                        SIGTERM each node, wait up to $KAFKA_STOP_TIMEOUT s,
#                                        then SIGKILL; remove pid files. Not running = exit 0.
#                                        --all: stop every cluster under the default work root
#                                        (also ones started by other users of this tree).
#   kafka.sh status [--name NAME]        "node I 127.0.0.1:P: running (pid X)" / "not running"
#                                        per node; exit 0 only if all nodes run.
#   kafka.sh bootstrap [--name NAME]     print the bootstrap string of a configured cluster.
#   kafka.sh kill-node I [--name NAME]   SIGKILL node I (1-based; = node.id) of a running cluster.
#   kafka.sh start-node I [--name NAME] [--timeout SECS]
#                                        restart node I with its existing config/storage (no
#                                        reformat) and wait until it serves and is registered.
#   kafka.sh tool CLASS|ALIAS [ARGS...]  run a Kafka CLI class from lib/ with a quiet log4j2
#                                        config. Aliases: topics, console-producer,
#                                        console-consumer, consumer-groups, metadata-quorum,
#                                        api-versions, storage.
#   kafka.sh clean [--name NAME]         stop the cluster and delete its work dir.
#
# CLUSTERS / NAMES / PORTS
#   --name picks the cluster (its work dir). Default name: "trio" if --nodes 3 is given
#   (and for kill-node/start-node), else "single". Defaults per name:
#     single : 1 node,  broker 127.0.0.1:9092,               controller 9192
#     trio   : 3 nodes, brokers 127.0.0.1:19092,19093,19094, controllers 19192..19194
#     other  : 1 node (or --nodes), port 9092 (or --port)
#   Node I (1..N) has node.id=I, broker port P+I-1, controller port C+I-1 (C defaults to P+100).
#   Both default clusters can run at the same time. Every node is a combined
#   broker+controller (process.roles=broker,controller); static KRaft quorum of all N nodes.
#   N=1 : RF 1 everywhere.  N>=3: default.replication.factor=3, min.insync.replicas=2,
#   offsets/transaction topics RF 3 (min ISR 2). Always: auto.create.topics.enable=true,
#   num.partitions=3, group.initial.rebalance.delay.ms=0. N>1: controlled.shutdown.enable=false
#   (else stopping all nodes can hang on the lost quorum).
#
# WORK DIR (default deploy/local-kafka/work/<name>/, git-ignored)
#   cluster.env  log4j2.properties  node-I/{server.properties,data/,kafka.pid,server.log,stdout.log}
#
# ENVIRONMENT
#   KAFKA_WORK_DIR       work dir of the selected cluster (overrides work/<name>/)
#   KAFKA_CLUSTER_NAME   default for --name
#   KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 20)
#   KAFKA_HEAP_OPTS      default "-Xms512m -Xmx1g"
#   KAFKA_JVM_OPTS       extra JVM options for the broker (appended)
#   KAFKA_EXTRA_PROPERTIES  extra server.properties lines (newline-separated), appended to
#                        every node's config by `start` (later keys win; start-node keeps
#                        the config written by start)
#   JAVA, MVN            java / mvn executables (default: from PATH)
#   MVN_ARGS             extra maven arguments for fetch (e.g. "-o")
#
# EXIT CODES: 0 ok, 1 failure (message on stderr), 2 usage error.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
LIB_DIR="$SCRIPT_DIR/lib"
POM="$SCRIPT_DIR/pom.xml"
STAMP="$LIB_DIR/.fetched-pom.sha256"
WORK_ROOT="$SCRIPT_DIR/work"
PROBE="$SCRIPT_DIR/kafka_probe.py"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
HOST=127.0.0.1
# short-lived tool JVMs (StorageTool, console tools): start fast, peak speed irrelevant
TOOL_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto)

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: ERROR: %s\n' "$*" >&2; exit 1; }
usage_die() { printf 'kafka.sh: %s\n(see the header of %s for usage)\n' "$*" "$SCRIPT_DIR/kafka.sh" >&2; exit 2; }

# ---------------------------------------------------------------- prerequisites
need_java() {
  command -v "$JAVA" >/dev/null 2>&1 \
    || die "'$JAVA' not found: install a Java 17+ runtime (e.g. apt-get install -y openjdk-17-jre-headless) or set JAVA=/path/to/java"
  local ver major
  ver="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${ver%%.*}"
  if [[ "$major" =~ ^[0-9]+$ ]] && (( major < 17 )); then
    die "Kafka 4.x needs Java 17+, but '$JAVA' is version $ver"
  fi
}

need_mvn() {
  command -v "$MVN" >/dev/null 2>&1 \
    || die "'$MVN' not found: install Maven (e.g. apt-get install -y maven) or set MVN=/path/to/mvn; it is needed once to fetch Kafka's jars into $LIB_DIR"
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

lib_up_to_date() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(pom_hash)" ]] \
    && compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null
}

cmd_fetch() {
  [[ $# -eq 0 ]] || usage_die "fetch takes no arguments"
  mkdir -p "$LIB_DIR"
  exec 8>"$LIB_DIR/.fetch.lock"
  flock -w 600 8 || die "timed out waiting for another fetch (lock $LIB_DIR/.fetch.lock)"
  if lib_up_to_date; then
    log "lib/ is up to date with pom.xml, not fetching"
    return 0
  fi
  need_java
  need_mvn
  log "fetching Kafka jars with maven into $LIB_DIR ..."
  rm -f "$STAMP" "$LIB_DIR"/*.jar
  local t0=$SECONDS
  # shellcheck disable=SC2086
  # (Debian's maven 3.8 prints stray ANSI resets even with -q: strip them)
  if ! "$MVN" -B -q -Dstyle.color=never -f "$POM" ${MVN_ARGS:-} process-resources 2>&1 \
      | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
    die "maven failed to fetch Kafka's jars (see output above); is Maven Central reachable?"
  fi
  compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null || die "maven ran but no kafka_2.13 jar is in $LIB_DIR"
  pom_hash >"$STAMP"
  log "fetched $(find "$LIB_DIR" -maxdepth 1 -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

ensure_fetched() {
  if ! lib_up_to_date; then
    cmd_fetch
  fi
}

# ---------------------------------------------------------------- cluster selection
NAME=""
WORK=""
select_cluster() { # $1 = default name
  NAME="${NAME:-${KAFKA_CLUSTER_NAME:-$1}}"
  [[ "$NAME" =~ ^[A-Za-z0-9._-]+$ ]] || usage_die "bad cluster name '$NAME'"
  WORK="${KAFKA_WORK_DIR:-$WORK_ROOT/$NAME}"
}

# cluster.env holds the layout of a configured cluster
C_NODES="" C_PORT="" C_CPORT="" C_CLUSTER_ID=""
load_cluster_env() {
  [[ -f "$WORK/cluster.env" ]] || return 1
  # shellcheck disable=SC1091
  source "$WORK/cluster.env"
  C_NODES="$NODES" C_PORT="$PORT" C_CPORT="$CONTROLLER_PORT" C_CLUSTER_ID="$CLUSTER_ID"
}

node_dir() { echo "$WORK/node-$1"; }
broker_port() { echo $((C_PORT + $1 - 1)); }
controller_port() { echo $((C_CPORT + $1 - 1)); }
bootstrap_string() {
  local i out=""
  for ((i = 1; i <= C_NODES; i++)); do out+="${out:+,}$HOST:$(broker_port "$i")"; done
  echo "$out"
}

lock_work() {
  mkdir -p "$WORK"
  exec 9>"$WORK/.lock"
  flock -w 300 9 || die "timed out waiting for another kafka.sh on $WORK"
}

# ---------------------------------------------------------------- processes
# alive and not a zombie (a broker that died during our own start is our zombie child)
is_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# pid of node I if it is alive AND really our broker for that node, else empty
node_pid() {
  local pf pid cmdline
  pf="$(node_dir "$1")/kafka.pid"
  [[ -f "$pf" ]] || return 0
  pid="$(cat "$pf" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  is_alive "$pid" || return 0
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *kafka.Kafka*"$(node_dir "$1")/server.properties"* ]] || return 0
  echo "$pid"
}

port_in_use() { # $1 port
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
  fi
}

port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(\(.*\))/\1/p' | head -n1
}

show_log_tail() { # $1 node
  local d
  d="$(node_dir "$1")"
  local f
  for f in "$d/stdout.log" "$d/server.log"; do
    if [[ -s "$f" ]]; then
      printf -- '----- last lines of %s -----\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

probe_node() { # $1 node, $2 expected ids (comma list)
  if command -v python3 >/dev/null 2>&1; then
    python3 "$PROBE" --bootstrap "$HOST:$(broker_port "$1")" --expect-ids "$2" --timeout 2 2>/dev/null
  else
    # fallback without python: ask the broker via the JVM tool and check the listed ids
    local out id
    out="$(run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "$HOST:$(broker_port "$1")" 2>/dev/null)" || return 1
    for id in ${2//,/ }; do
      grep -q "(id: $id rack" <<<"$out" || return 1
    done
  fi
}

# Wait until every node in $1 (space list) answers Metadata listing all ids in $2.
wait_ready() { # $1 nodes to check, $2 expected ids, $3 timeout
  local deadline=$((SECONDS + $3)) i pending
  while :; do
    pending=""
    for i in $1; do
      if [[ -z "$(node_pid "$i")" ]]; then
        log "node $i (pid file $(node_dir "$i")/kafka.pid) died during start-up"
        show_log_tail "$i"
        return 1
      fi
      probe_node "$i" "$2" || pending+=" $i"
    done
    [[ -z "$pending" ]] && return 0
    if ((SECONDS >= deadline)); then
      log "timed out after $3 s waiting for node(s)$pending to serve metadata with brokers {$2}"
      for i in $pending; do show_log_tail "$i"; done
      return 1
    fi
    sleep 0.5
  done
}

launch_node() { # $1 node
  local d
  d="$(node_dir "$1")"
  rm -f "$d/kafka.pid"
  : >"$d/stdout.log"
  # fds 8/9 hold kafka.sh's flocks: the broker must not inherit them (8>&- 9>&-)
  # shellcheck disable=SC2086
  setsid "$JAVA" $KAFKA_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$WORK/log4j2.properties" \
    -Dkafka.logs.dir="$d" \
    $KAFKA_JVM_OPTS \
    -cp "$LIB_DIR/*" kafka.Kafka "$d/server.properties" \
    >>"$d/stdout.log" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$!
  # setsid only forks when it is a process-group leader (job control on); then $! is
  # setsid itself, which exits at once: find the real JVM instead.
  sleep 0.2
  if ! is_alive "$pid" && command -v pgrep >/dev/null 2>&1; then
    pid="$(pgrep -n -f "kafka.Kafka $d/server.properties" || echo "$pid")"
  fi
  echo "$pid" >"$d/kafka.pid"
}

check_ports_free() { # $1 node
  local p owner
  for p in "$(broker_port "$1")" "$(controller_port "$1")"; do
    if port_in_use "$p"; then
      owner="$(port_owner "$p")"
      die "port $p (needed by node $1 of cluster '$NAME') is already in use${owner:+ by $owner}; another Kafka still running? ('kafka.sh status --name NAME', 'kafka.sh stop --all') or choose other ports with --port/--controller-port"
    fi
  done
}

terminate_pids() { # $@ pids; SIGTERM, wait, SIGKILL
  local pids=("$@") p alive deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while :; do
    alive=()
    for p in "${pids[@]}"; do is_alive "$p" && alive+=("$p"); done
    ((${#alive[@]})) || return 0
    if ((SECONDS >= deadline)); then
      log "pid(s) ${alive[*]} still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.5
      return 0
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- config
write_log4j2() {
  cat >"$WORK/log4j2.properties" <<'EOF'
# Written by kafka.sh. Each broker logs to ${sys:kafka.logs.dir}/server.log (= work/<name>/node-I/).
status = warn
name = oomstream-local-kafka

appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2

rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE

logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apachekafka.name = org.apache.kafka
logger.apachekafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

# log4j2 config for CLI tools (StorageTool, console tools): WARN+ to stderr only
tools_log4j2() {
  local cfg="$WORK_ROOT/.tools-log4j2.properties"
  if [[ ! -f "$cfg" ]]; then
    mkdir -p "$WORK_ROOT"
    printf '%s\n' '# Written by kafka.sh for CLI tools: warnings and errors to stderr only.' \
      'status = warn' 'appender.stderr.type = Console' 'appender.stderr.name = STDERR' \
      'appender.stderr.target = SYSTEM_ERR' 'appender.stderr.layout.type = PatternLayout' \
      'appender.stderr.layout.pattern = [%d] %p %m (%c)%n' 'rootLogger.level = WARN' \
      'rootLogger.appenderRef.stderr.ref = STDERR' >"$cfg.$$"
    mv -f "$cfg.$$" "$cfg"
  fi
  echo "$cfg"
}

write_server_properties() { # $1 node
  local i=$1 d voters="" j rf isr
  d="$(node_dir "$i")"
  for ((j = 1; j <= C_NODES; j++)); do voters+="${voters:+,}$j@$HOST:$(controller_port "$j")"; done
  if ((C_NODES >= 3)); then rf=3; isr=2; elif ((C_NODES == 2)); then rf=2; isr=1; else rf=1; isr=1; fi
  # With several combined nodes stopped together, the last broker's controlled shutdown
  # waits (minutes) for a controller quorum that is already gone: skip it. Fault tests
  # use SIGKILL anyway; a single node's controlled shutdown is instant and stays on.
  local cse=true
  ((C_NODES > 1)) && cse=false
  mkdir -p "$d/data"
  cat >"$d/server.properties" <<EOF
# Written by kafka.sh for cluster '$NAME' node $i of $C_NODES. Regenerated by 'kafka.sh start'.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(broker_port "$i"),CONTROLLER://$HOST:$(controller_port "$i")
advertised.listeners=PLAINTEXT://$HOST:$(broker_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$d/data

auto.create.topics.enable=true
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
controlled.shutdown.enable=$cse

# faster failure detection for fault tests (defaults: 9000 / 2000 / 30000)
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=10000

num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# from $KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$d/server.properties"
  fi
}

format_node() { # $1 node
  local d out
  d="$(node_dir "$1")"
  if ! out="$("$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$(tools_log4j2)" -cp "$LIB_DIR/*" \
      kafka.tools.StorageTool format -t "$C_CLUSTER_ID" -c "$d/server.properties" 2>&1)"; then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

# ---------------------------------------------------------------- commands
parse_name_opts() { # common --name/--nodes parsing for non-start commands; sets ARGS
  ARGS=()
  OPT_NODES=""
  while (($#)); do
    case "$1" in
      --name) [[ $# -ge 2 ]] || usage_die "--name needs a value"; NAME="$2"; shift 2 ;;
      --name=*) NAME="${1#*=}"; shift ;;
      --nodes) [[ $# -ge 2 ]] || usage_die "--nodes needs a value"; OPT_NODES="$2"; shift 2 ;;
      --nodes=*) OPT_NODES="${1#*=}"; shift ;;
      --timeout) [[ $# -ge 2 ]] || usage_die "--timeout needs a value"; KAFKA_START_TIMEOUT="$2"; shift 2 ;;
      --timeout=*) KAFKA_START_TIMEOUT="${1#*=}"; shift ;;
      --all) OPT_ALL=1; shift ;;
      -*) usage_die "unknown option '$1'" ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
}

cmd_start() {
  local nodes="" port="" cport="" keep=0 i
  while (($#)); do
    case "$1" in
      --nodes) [[ $# -ge 2 ]] || usage_die "--nodes needs a value"; nodes="$2"; shift 2 ;;
      --nodes=*) nodes="${1#*=}"; shift ;;
      --port) [[ $# -ge 2 ]] || usage_die "--port needs a value"; port="$2"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --controller-port) [[ $# -ge 2 ]] || usage_die "--controller-port needs a value"; cport="$2"; shift 2 ;;
      --controller-port=*) cport="${1#*=}"; shift ;;
      --name) [[ $# -ge 2 ]] || usage_die "--name needs a value"; NAME="$2"; shift 2 ;;
      --name=*) NAME="${1#*=}"; shift ;;
      --timeout) [[ $# -ge 2 ]] || usage_die "--timeout needs a value"; KAFKA_START_TIMEOUT="$2"; shift 2 ;;
      --timeout=*) KAFKA_START_TIMEOUT="${1#*=}"; shift ;;
      --keep) keep=1; shift ;;
      *) usage_die "start: unknown argument '$1'" ;;
    esac
  done
  if [[ -n "$nodes" && "$nodes" == 3 ]]; then select_cluster trio; else select_cluster single; fi
  if [[ -z "$nodes" ]]; then [[ "$NAME" == trio ]] && nodes=3 || nodes=1; fi
  if [[ -z "$port" ]]; then [[ "$NAME" == trio ]] && port=19092 || port=9092; fi
  [[ "$nodes" =~ ^[1-9]$ ]] || usage_die "--nodes must be 1..9 (got '$nodes')"
  [[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1024 && port + nodes - 1 <= 65535)) || usage_die "bad --port '$port'"
  cport="${cport:-$((port + 100))}"
  [[ "$cport" =~ ^[0-9]+$ ]] && ((cport >= 1024 && cport + nodes - 1 <= 65535)) || usage_die "bad --controller-port '$cport'"
  if ((cport < port + nodes && port < cport + nodes)); then usage_die "broker ports $port.. and controller ports $cport.. overlap"; fi
  [[ "$KAFKA_START_TIMEOUT" =~ ^[0-9]+$ ]] || usage_die "bad timeout '$KAFKA_START_TIMEOUT'"

  need_java
  ensure_fetched
  lock_work

  # already running?
  if load_cluster_env; then
    local running=0
    for ((i = 1; i <= C_NODES; i++)); do [[ -n "$(node_pid "$i")" ]] && running=$((running + 1)); done
    if ((running > 0)); then
      if ((running == C_NODES && C_NODES == nodes && C_PORT == port && C_CPORT == cport)); then
        log "cluster '$NAME' is already running; checking it serves"
        local ids
        ids="$(seq -s, 1 "$C_NODES")"
        wait_ready "$(seq 1 "$C_NODES" | tr '\n' ' ')" "$ids" "$KAFKA_START_TIMEOUT" \
          || die "cluster '$NAME' is running but not serving; try 'kafka.sh stop --name $NAME' first"
        bootstrap_string
        return 0
      fi
      die "cluster '$NAME' is already (partly) running with $running/$C_NODES node(s) on port $C_PORT; stop it first ('kafka.sh stop --name $NAME') or use start-node"
    fi
  fi

  local reuse=0
  if ((keep)) && load_cluster_env && ((C_NODES == nodes && C_PORT == port && C_CPORT == cport)) \
      && [[ -f "$(node_dir 1)/data/meta.properties" ]]; then
    reuse=1
  fi
  C_NODES=$nodes C_PORT=$port C_CPORT=$cport
  for ((i = 1; i <= nodes; i++)); do check_ports_free "$i"; done

  local t0=$SECONDS
  if ((reuse)); then
    load_cluster_env
    log "reusing existing storage of cluster '$NAME' (cluster id $C_CLUSTER_ID)"
  else
    # fresh cluster: wipe old node dirs (also of a previous larger cluster)
    rm -rf "$WORK"/node-*
    C_CLUSTER_ID="$("$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$(tools_log4j2)" -cp "$LIB_DIR/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    [[ "$C_CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka.tools.StorageTool random-uuid failed (got '$C_CLUSTER_ID')"
    cat >"$WORK/cluster.env" <<EOF
# Written by kafka.sh start; read by stop/status/kill-node/start-node.
NAME=$NAME
NODES=$nodes
PORT=$port
CONTROLLER_PORT=$cport
CLUSTER_ID=$C_CLUSTER_ID
EOF
  fi
  write_log4j2
  for ((i = 1; i <= nodes; i++)); do write_server_properties "$i"; done

  if ((!reuse)); then
    log "formatting $nodes node(s) of cluster '$NAME' (cluster id $C_CLUSTER_ID)"
    local fpids=() fail=0
    for ((i = 1; i <= nodes; i++)); do format_node "$i" & fpids+=($!); done
    for i in "${fpids[@]}"; do wait "$i" || fail=1; done
    ((fail == 0)) || die "formatting storage failed (see above)"
  fi

  log "starting $nodes node(s) of cluster '$NAME': brokers $(bootstrap_string), controllers $HOST:$cport..$((cport + nodes - 1)), work dir $WORK"
  for ((i = 1; i <= nodes; i++)); do launch_node "$i"; done
  if ! wait_ready "$(seq 1 "$nodes" | tr '\n' ' ')" "$(seq -s, 1 "$nodes")" "$KAFKA_START_TIMEOUT"; then
    log "start-up failed; stopping the node(s) that were started"
    stop_nodes
    die "cluster '$NAME' did not come up (logs in $WORK/node-*/)"
  fi
  log "cluster '$NAME' ready in $((SECONDS - t0)) s"
  bootstrap_string
}

stop_nodes() { # stop all nodes with pid files in $WORK
  local pf pid pids=() i
  for pf in "$WORK"/node-*/kafka.pid; do
    [[ -f "$pf" ]] || continue
    i="${pf%/kafka.pid}"; i="${i##*/node-}"
    pid="$(node_pid "$i")"
    [[ -n "$pid" ]] && pids+=("$pid")
  done
  if ((${#pids[@]})); then
    log "stopping cluster '$NAME' (pid(s) ${pids[*]})"
    terminate_pids "${pids[@]}"
  fi
  rm -f "$WORK"/node-*/kafka.pid
}

default_name_for() { # $1 = --nodes value
  if [[ "$1" == 3 ]]; then echo trio; else echo single; fi
}

cmd_stop() {
  OPT_ALL=0
  parse_name_opts "$@"
  ((${#ARGS[@]} == 0)) || usage_die "stop: unexpected argument '${ARGS[0]}'"
  if ((OPT_ALL)); then
    local d
    for d in "$WORK_ROOT"/*/; do
      [[ -d "$d" ]] || continue
      NAME="$(basename "$d")" WORK="${d%/}"
      (lock_work; stop_nodes)
    done
    log "all clusters under $WORK_ROOT stopped"
    return 0
  fi
  select_cluster "$(default_name_for "$OPT_NODES")"
  if [[ ! -d "$WORK" ]]; then
    log "cluster '$NAME' is not running (no work dir $WORK)"
    return 0
  fi
  lock_work
  stop_nodes
  log "cluster '$NAME' stopped"
}

cmd_status() {
  parse_name_opts "$@"
  select_cluster "$(default_name_for "$OPT_NODES")"
  if ! load_cluster_env; then
    echo "cluster $NAME: not configured (no $WORK/cluster.env): not running"
    return 1
  fi
  local i pid all=0
  for ((i = 1; i <= C_NODES; i++)); do
    pid="$(node_pid "$i")"
    if [[ -n "$pid" ]]; then
      echo "cluster $NAME node $i $HOST:$(broker_port "$i"): running (pid $pid)"
    else
      echo "cluster $NAME node $i $HOST:$(broker_port "$i"): not running"
      all=1
    fi
  done
  return $all
}

cmd_bootstrap() {
  parse_name_opts "$@"
  select_cluster "$(default_name_for "$OPT_NODES")"
  load_cluster_env || die "cluster '$NAME' is not configured (no $WORK/cluster.env); run 'kafka.sh start' first"
  bootstrap_string
}

node_arg() { # validates node index $1 against the configured cluster
  [[ "${1:-}" =~ ^[1-9]$ ]] || usage_die "expected a node number 1..N, got '${1:-}'"
  load_cluster_env || die "cluster '$NAME' is not configured (no $WORK/cluster.env); start it first"
  (($1 <= C_NODES)) || die "cluster '$NAME' has only $C_NODES node(s)"
}

cmd_kill_node() {
  parse_name_opts "$@"
  ((${#ARGS[@]} == 1)) || usage_die "usage: kafka.sh kill-node I [--name NAME]"
  select_cluster trio
  node_arg "${ARGS[0]}"
  lock_work
  local i=${ARGS[0]} pid
  pid="$(node_pid "$i")"
  if [[ -z "$pid" ]]; then
    log "node $i of cluster '$NAME' is not running"
  else
    kill -KILL "$pid" 2>/dev/null || true
    local n=0
    while is_alive "$pid" && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
    log "killed node $i of cluster '$NAME' (pid $pid, SIGKILL)"
  fi
  rm -f "$(node_dir "$i")/kafka.pid"
}

cmd_start_node() {
  parse_name_opts "$@"
  ((${#ARGS[@]} == 1)) || usage_die "usage: kafka.sh start-node I [--name NAME] [--timeout SECS]"
  select_cluster trio
  node_arg "${ARGS[0]}"
  need_java
  ensure_fetched
  lock_work
  local i=${ARGS[0]} j ids
  [[ -f "$(node_dir "$i")/data/meta.properties" ]] \
    || die "node $i of cluster '$NAME' has no formatted storage; use 'kafka.sh start --name $NAME'"
  ids="$i"
  for ((j = 1; j <= C_NODES; j++)); do
    ((j != i)) && [[ -n "$(node_pid "$j")" ]] && ids+=",$j"
  done
  if [[ -n "$(node_pid "$i")" ]]; then
    log "node $i of cluster '$NAME' is already running"
  else
    check_ports_free "$i"
    local t0=$SECONDS
    launch_node "$i"
    wait_ready "$i" "$ids" "$KAFKA_START_TIMEOUT" || { stop_one "$i"; die "node $i of cluster '$NAME' did not come back"; }
    log "node $i of cluster '$NAME' serving again after $((SECONDS - t0)) s"
  fi
  echo "$HOST:$(broker_port "$i")"
}

stop_one() {
  local pid
  pid="$(node_pid "$1")"
  [[ -n "$pid" ]] && terminate_pids "$pid"
  rm -f "$(node_dir "$1")/kafka.pid"
}

run_tool() { # $1 class, rest args
  local cls="$1" cfg
  shift
  cfg="$(tools_log4j2)"
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -Xmx512m -Dlog4j2.configurationFile="$cfg" -cp "$LIB_DIR/*" "$cls" "$@"
}

cmd_tool() {
  (($#)) || usage_die "usage: kafka.sh tool CLASS|ALIAS [ARGS...]"
  local cls="$1"
  shift
  case "$cls" in
    topics) cls=org.apache.kafka.tools.TopicCommand ;;
    console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
    api-versions) cls=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    storage) cls=kafka.tools.StorageTool ;;
  esac
  need_java
  ensure_fetched
  run_tool "$cls" "$@"
}

cmd_clean() {
  parse_name_opts "$@"
  select_cluster "$(default_name_for "$OPT_NODES")"
  [[ -d "$WORK" ]] || { log "nothing to clean for '$NAME'"; return 0; }
  lock_work
  stop_nodes
  rm -rf "$WORK"
  log "removed $WORK"
}

main() {
  (($#)) || usage_die "missing command (fetch|start|stop|status|bootstrap|kill-node|start-node|tool|clean)"
  local cmd="$1"
  shift
  case "$cmd" in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    bootstrap) cmd_bootstrap "$@" ;;
    kill-node) cmd_kill_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    tool) cmd_tool "$@" ;;
    clean) cmd_clean "$@" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) usage_die "unknown command '$cmd'" ;;
  esac
}

main "$@"
