# Sourced by bash scripts (bench/lib.sh, scripts/demo) that need a test
# origin; the Python tests have harness.Nginx (tests/integration/harness.py).
#
# start_nginx DIR DOCROOT [SERVER_CONF]: nginx on 127.0.0.1 at a free port
# serving DOCROOT, with SERVER_CONF (locations) added to its server block;
# its config, logs and temp files under DIR; DIR/logs/access.log has
# "$request_uri $status $body_bytes_sent" per request. Sets NGINX_PORT and
# NGINX_PID (stop it with SIGQUIT: it flushes its logs). When nginx does not
# start, prints its error log to stderr and returns 1.
start_nginx() {
    local dir=$1 docroot=$2 server_conf=${3:-} port user_line=
    mkdir -p "$dir"/{tmp,logs}
    [[ $(id -u) == 0 ]] && user_line='user root;'
    NGINX_PORT= NGINX_PID=
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
        cat >"$dir/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 256; }
http {
    log_format bytes '\$request_uri \$status \$body_bytes_sent';
    access_log $dir/logs/access.log bytes;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$port;
        root $docroot;
        $server_conf
    }
}
EOF
        nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
        NGINX_PID=$!
        for _ in $(seq 50); do
            if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
                NGINX_PORT=$port
                return 0
            fi
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
        grep -q 'in use' "$dir/logs/error.log" 2>/dev/null || break  # not a port clash
    done
    cat "$dir/logs/error.log" >&2 2>/dev/null || true
    return 1
}
