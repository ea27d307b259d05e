# Starts and stops a throwaway RabbitMQ node on 127.0.0.1 for tests and benchmarks. Sourced, not run.
# After start_rabbitmq: AMQP_TEST_URL points at the node (user guest, vhost /), RMQ_PORT is its port.

start_rabbitmq() {
    ensure_packages rabbitmq-server librabbitmq-dev pkg-config
    RMQ_DIR=$(mktemp -d /tmp/integrator-rabbitmq.XXXXXX)
    chmod 755 "$RMQ_DIR"
    RMQ_PORT=$(free_port)
    local node="integrator-test-$RMQ_PORT@localhost"
    mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
    echo "[]." > "$RMQ_DIR/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$RMQ_DIR" 2>/dev/null || true
    # HOME holds the node's Erlang cookie; the server and rabbitmqctl must share it. Debian's wrappers in
    # /usr/sbin switch to /var/lib/rabbitmq and its cookie, so the scripts in /usr/lib/rabbitmq/bin are called directly.
    # A private node name and ports keep this node apart from a system one on 5672.
    # The +sbwt flags stop idle Erlang schedulers from spinning: on a small machine shared with PostgreSQL and the
    # workers, spinning schedulers take CPU time the other processes need.
    RMQ_ENV=(env HOME="$RMQ_DIR" RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
        RABBITMQ_NODE_PORT="$RMQ_PORT" RABBITMQ_DIST_PORT="$(free_port)" RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia"
        RABBITMQ_LOG_BASE="$RMQ_DIR/log" RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins")
    local run=()
    [ "$(id -u)" -eq 0 ] && run=(runuser -u rabbitmq --)
    RMQ_RUN=("${run[@]}" "${RMQ_ENV[@]}")
    "${RMQ_RUN[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server >"$RMQ_DIR/server.out" 2>&1 &
    RMQ_SERVER_PID=$!
    RMQ_CTL=("${RMQ_RUN[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node")
    for _ in $(seq 1 120); do
        if "${RMQ_CTL[@]}" await_startup >/dev/null 2>&1; then
            export AMQP_TEST_URL="amqp://guest:guest@127.0.0.1:$RMQ_PORT/%2f"
            echo "RabbitMQ test node on 127.0.0.1:$RMQ_PORT ($RMQ_DIR)" >&2
            return 0
        fi
        sleep 1
    done
    echo "RabbitMQ did not start; its output and log:" >&2
    cat "$RMQ_DIR/server.out" "$RMQ_DIR"/log/*.log 2>/dev/null | tail -40 >&2
    exit 1
}

# Stops the node's application (connections drop) but keeps the Erlang VM, for broker-restart tests.
pause_rabbitmq() { "${RMQ_CTL[@]}" stop_app >/dev/null; }
resume_rabbitmq() { "${RMQ_CTL[@]}" start_app >/dev/null; }

stop_rabbitmq() {
    if [ -n "${RMQ_DIR:-}" ]; then
        "${RMQ_CTL[@]}" stop >/dev/null 2>&1 || kill "$RMQ_SERVER_PID" 2>/dev/null || true
        wait "$RMQ_SERVER_PID" 2>/dev/null || true
        rm -rf "$RMQ_DIR"
        RMQ_DIR=""
    fi
}
